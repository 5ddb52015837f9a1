"""hdm: image restoration and explainability - HDM-CAM, high-frequency SR losses, face/general SR fusion."""
__version__ = "0.1.0"
