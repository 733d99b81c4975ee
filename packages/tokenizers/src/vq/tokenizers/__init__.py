"""vq.tokenizers"""
