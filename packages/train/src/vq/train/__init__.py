"""vq.train"""
