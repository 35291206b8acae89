# One image for every hpsearch role in docker-compose.yml: api, dashboard and GPU workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Only what the package build needs (see pyproject.toml), so source edits elsewhere in the
# repo do not invalidate the install layer.
COPY pyproject.toml README.md ./
COPY hpsearch ./hpsearch
COPY service ./service
COPY search_spaces ./search_spaces
RUN pip install . \
    && useradd --create-home --uid 1000 hpsearch

USER hpsearch
EXPOSE 8000 8080
CMD ["hpsearch", "--help"]
