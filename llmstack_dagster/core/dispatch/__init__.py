"""Dispatching the training entrypoint elsewhere: Modal app spec, uploads, remote runner."""
