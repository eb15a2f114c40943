# The OdooOps container Action. The runner builds this image (runs.image: Dockerfile) and runs it
# with --workdir /github/workspace and the workspace mounted there, so neither USER nor WORKDIR is
# set: the code lives in /opt/odooops and the entry point is an absolute exec-form path, which
# also makes Python PID 1 so that it receives SIGINT/SIGTERM when the workflow is cancelled.
# Python matches the version the test suite runs on.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONPATH=/opt/odooops

COPY requirements.txt /opt/odooops/requirements.txt
RUN pip install --no-cache-dir -r /opt/odooops/requirements.txt

COPY entrypoint.py post_entrypoint.py /opt/odooops/
COPY odooops_action/ /opt/odooops/odooops_action/
# Bytecode compiled at build time (PYTHONDONTWRITEBYTECODE only stops writing it at run time), so
# each step starts without compiling; the post entry point is executed directly (docker --entrypoint).
# `odooops` (CLI and worker: docker run --entrypoint odooops IMAGE worker ...) without installing the
# package, which would duplicate the code in site-packages.
RUN python -m compileall -q /opt/odooops/odooops_action \
    && chmod 0755 /opt/odooops/entrypoint.py /opt/odooops/post_entrypoint.py \
    && printf '#!/bin/sh\nexec /usr/local/bin/python -m odooops_action "$@"\n' > /usr/local/bin/odooops \
    && chmod 0755 /usr/local/bin/odooops

ENTRYPOINT ["/usr/local/bin/python", "/opt/odooops/entrypoint.py"]
