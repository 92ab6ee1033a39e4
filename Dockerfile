# ssl-explorer on a CUDA GPU: the dashboard on port 8501, training in the same container.
#   docker build -t ssl-explorer .
#   docker run --gpus all -p 8501:8501 -v "$PWD/runs:/app/runs" ssl-explorer
# The first stage builds the wheel (the library, the app and the bundled runs); the second installs
# it as any user would, no editable install. The base image brings a CUDA build of torch and
# torchvision; pip keeps them (pyproject allows any torch 2.x) and adds the rest, with the `gpu`
# extra's FAISS in place of faiss-cpu.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ssl_core ssl_core
COPY app app
COPY pretrained pretrained
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
COPY --from=wheel /dist /dist
RUN pip install --no-cache-dir "$(echo /dist/ssl_explorer-*.whl)[gpu]" \
 && pip uninstall -y faiss-cpu \
 && pip install --no-cache-dir --force-reinstall --no-deps faiss-gpu-cu12 \
 && rm -rf /dist

WORKDIR /app
ENV SSL_EXPLORER_RUNS=/app/runs
EXPOSE 8501
CMD ["ssl-explorer", "demo", "--address", "0.0.0.0", "--port", "8501"]
