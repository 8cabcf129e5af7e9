FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
# A throwaway key: production settings refuse short ones, and this one only lives for the build step.
RUN DJANGO_SECRET_KEY="collectstatic-only-$(python -c 'import secrets; print(secrets.token_urlsafe(48))')" \
    python manage.py collectstatic --noinput -v0
RUN useradd --system --home /app psplan
USER psplan
EXPOSE 8000
# PS Plan logs one JSON line per request itself (psplan.requests), without secret query values.
CMD ["gunicorn", "psplan.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
