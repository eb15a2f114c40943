# The OdooOps container Action. The runner builds this image (runs.image: Dockerfile) and runs it
# with --workdir /github/workspace and the workspace mounted there, so neither USER nor WORKDIR is
# set: the code lives in /opt/odooops and the entry point is an absolute exec-form path, which
# also makes Python PID 1 so that it receives the SIGINT/SIGTERM the `docker run` client passes on
# when the workflow is cancelled.
# Python matches the minor version the test suite runs on; the patch release is the newest 3.11
# security release (3.11 is security-only until 2027-10). Released for linux/amd64 and linux/arm64.
FROM python:3.11.17-slim-bookworm

# For anything else run in the image (the worker's commands); the entry points themselves run with
# python -E and so ignore every PYTHON* variable (odooops_action/action/isolation.py).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The five runtime packages and their pinned dependencies, nothing else (pip compiles their
# bytecode: each step starts without compiling).
COPY requirements.txt /opt/odooops/requirements.txt
RUN pip install --no-cache-dir -r /opt/odooops/requirements.txt

COPY entrypoint.py post_entrypoint.py /opt/odooops/
COPY odooops_action/ /opt/odooops/odooops_action/
# Our bytecode compiled at build time too (PYTHONDONTWRITEBYTECODE only stops writing it at run
# time). /opt/odooops is on sys.path through a .pth file, which python -E still reads (PYTHONPATH it
# would not). `odooops` (CLI and worker: docker run --entrypoint odooops IMAGE worker ...) runs the
# package in place rather than installing it, which would duplicate the code in site-packages.
RUN python -m compileall -q /opt/odooops/odooops_action \
    && chmod 0755 /opt/odooops/entrypoint.py /opt/odooops/post_entrypoint.py \
    && echo /opt/odooops > "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/odooops.pth" \
    && printf '#!/bin/sh\nexec /usr/local/bin/python -E -s -u -m odooops_action "$@"\n' > /usr/local/bin/odooops \
    && chmod 0755 /usr/local/bin/odooops

# The script's #! line carries the interpreter flags (-Esu), for this and the post entry point alike.
ENTRYPOINT ["/opt/odooops/entrypoint.py"]
