"""vq.generators"""
