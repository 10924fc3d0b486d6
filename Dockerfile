# abanet serve on CPU with the shipped model:
#   docker build -t abanet . && docker run --rm -p 8000:8000 abanet
#   (open http://localhost:8000/; add -e ABANET_TOKEN=... to require a bearer token)
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 ABANET_CACHE_DIR=/home/abanet/.cache/abanet
# CPU-only torch first (the default wheels carry CUDA: gigabytes this image does not need)
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch torchvision
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /src
RUN useradd --create-home abanet
USER abanet
WORKDIR /home/abanet
# build the model, the backend and the face detector once, so a container starts warm
RUN python -c "import abanet; s = abanet.Segmenter(); s.backend; s.detector"
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
CMD ["abanet", "serve", "--host", "0.0.0.0", "--port", "8000"]
