"""End-to-end YOLO detection in one Triton ensemble: encoded image bytes in, boxes in original pixels out.

yolo_triton.contract       the ensembles' tensors and the table of built-in models
yolo_triton.client         the Python client, the `yolo-triton` command, the HTTP gateway
yolo_triton.export         Ultralytics weights -> the detector graph -> a TensorRT plan
yolo_triton.repository     the Triton model repository, written from the contract
yolo_triton.triton_models  the Python-backend models it serves
"""
