# syntax=docker/dockerfile:1
# Reverb's image. The build stage installs Reverb into a virtual environment with the same
# `pip install .` the tests use (without the dev extras); the runtime stage copies only that
# environment and runs it as an unprivileged user.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/reverb
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY reverb ./reverb
RUN /opt/reverb/bin/pip install .

# The same base image as the build stage: the copied venv's python links to its interpreter.
FROM python:3.11-slim
ENV PATH=/opt/reverb/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MEDIA_DIR=/var/lib/reverb/media
# The media directory exists (owned by reverb) in the image, so a named volume mounted on it
# starts with that owner. Fixed ids, so USER can be numeric: an orchestrator can then verify
# that the container does not run as root without reading /etc/passwd.
RUN groupadd --system --gid 10001 reverb \
    && useradd --system --uid 10001 --gid reverb --home-dir /var/lib/reverb --create-home reverb \
    && mkdir -p /var/lib/reverb/media \
    && chown -R reverb:reverb /var/lib/reverb
COPY --from=build /opt/reverb /opt/reverb
USER 10001:10001
WORKDIR /var/lib/reverb
EXPOSE 5000
# No curl in the slim image: the interpreter that is there does the request.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '5000') + '/healthz', timeout=2)"]
CMD ["reverb", "serve", "--host", "0.0.0.0"]
