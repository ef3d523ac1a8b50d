"""COCO / YOLO / Label Studio JSON datasets from reviewed labels."""
