# One image for every Juhe process; the command picks the service (`python -m services.ledger`).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir "uv==0.13.8" && uv pip install --system --no-cache -r requirements.lock
COPY . .
RUN uv pip install --system --no-deps -e .
USER 10001
