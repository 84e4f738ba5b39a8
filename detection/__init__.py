"""gendet detection: YOLO cat/dog and face detectors through ultralytics, offline-safe.

    from detection import Detector
    Detector.load("best.pt").detect(images)
"""

__all__ = ["Detection", "Detections", "Detector"]


def __getattr__(name: str):
    # lazy: importing the package (for any submodule) stays free; only asking for these names
    # loads detection.detector (numpy, gendet_env's offline setup)
    if name in __all__:
        from detection import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'detection' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
