"""gendet detection: YOLO cat/dog and face detectors through ultralytics, offline-safe."""
