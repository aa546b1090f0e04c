# The trainserve image: one image for the api, worker, sweeper, migrate and flower services.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md alembic.ini ./
COPY service ./service
COPY workers ./workers
COPY client ./client
COPY migrations ./migrations
# Editable, so `trainserve db upgrade` finds migrations/ beside the code; with Flower,
# which the compose file's flower service runs from this image, and the onnx extra,
# with which the API exports models as ONNX.
RUN pip install --no-cache-dir -c constraints.txt -e '.[flower,onnx]' \
    && useradd --create-home --uid 10001 trainserve
USER 10001
EXPOSE 8000
CMD ["trainserve", "api", "--host", "0.0.0.0", "--port", "8000"]
