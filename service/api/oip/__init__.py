"""/v2: the Open Inference Protocol (KServe v2) over the same model versions."""
