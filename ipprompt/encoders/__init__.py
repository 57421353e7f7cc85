"""Image/text encoders (CLIP for retrieval and scoring, DINOv2 for identity) behind one loader."""
