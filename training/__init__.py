"""ftx training stage: a folder of images in, a fine-tuned run directory out."""
