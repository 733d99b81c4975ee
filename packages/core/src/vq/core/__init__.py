"""vq.core"""
