"""Data sets made on the fly: :mod:`.shapes` (the CAM benchmark's shapes drawn on photos, masks known pixel by
pixel) and :mod:`.folders` (SR training pairs from folders of HR photos, and face crops)."""
