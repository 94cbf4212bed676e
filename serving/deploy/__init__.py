"""Deployment manifests from an ftx export: Kubernetes (TF Serving), KServe and a Triton model repository.

``ftx serving-config`` writes them beside TF Serving's config files. Nothing
here imports TensorFlow: the edge install writes them too.
"""
