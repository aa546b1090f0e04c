"""/v1/models/{name}/.../evaluate: metrics of a model on labelled rows."""
