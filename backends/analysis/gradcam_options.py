"""Choices of the Grad-CAM view, importable without torch (the command line lists them)."""

METHODS = ("gradcam", "gradcam++", "eigencam")
FITS = ("squash", "crop")  # how a frame becomes the model's square input (see gradcam.frames_to_input)
