"""vq.decoders"""
