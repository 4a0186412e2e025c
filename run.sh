#!/usr/bin/env bash
# Set up and run HematoVision on one machine: web server + Celery worker (with beat),
# SQLite and kombu's SQLite (SQLAlchemy) broker unless DATABASE_URL / REDIS_URL say otherwise.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt

# DEBUG stays off unless asked for (DEBUG=1 ./run.sh): its error pages show code, settings and URLs.
# Static files are served by WhiteNoise from what collectstatic gathers below.
export DEBUG=${DEBUG:-0}
# One model per worker process, and the cores shared out between the processes (LiteRT and
# TensorFlow threads): 2 processes on 2 cores -> 1 thread each.
HV_WORKERS=${HV_WORKERS:-2}
export HV_INFER_THREADS=${HV_INFER_THREADS:-$(( $(nproc) / HV_WORKERS > 0 ? $(nproc) / HV_WORKERS : 1 ))}
PORT=${PORT:-8000}
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py collectstatic --noinput -v0
.venv/bin/python manage.py register_model --activate-if-none
.venv/bin/python manage.py seed_demo

mkdir -p var/log
# The worker gets its own session: a Ctrl-C (or a TERM to this script's group) must reach it only
# through cleanup, so that its pool processes are not killed under it while it shuts down.
setsid .venv/bin/celery -A hematovision worker --beat --loglevel INFO --concurrency "$HV_WORKERS" \
    -Q celery,heatmaps --schedule var/celerybeat-schedule >var/log/worker.log 2>&1 &
WORKER_PID=$!
# Candidate training (minutes of CPU per run) has its own worker and queue, so that classification
# never waits behind it; one run at a time.
setsid .venv/bin/celery -A hematovision worker --loglevel INFO --concurrency 1 -Q training -n training@%h \
    >var/log/training-worker.log 2>&1 &
TRAINING_PID=$!
.venv/bin/python manage.py runserver "127.0.0.1:$PORT" --noreload &
WEB_PID=$!
cleanup() {
    kill "$WEB_PID" "$WORKER_PID" "$TRAINING_PID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$WORKER_PID" 2>/dev/null || kill -0 "$TRAINING_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$WORKER_PID" 2>/dev/null || true  # the workers' sessions, if still there
    kill -KILL -- "-$TRAINING_PID" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
echo "Celery worker + beat started (pid $WORKER_PID, log var/log/worker.log)"
echo "Training worker started (pid $TRAINING_PID, log var/log/training-worker.log)"
echo "HematoVision: http://127.0.0.1:$PORT/  (sign in with a demo user above; Ctrl-C stops everything)"
# Stop everything as soon as either process ends.
wait -n "$WEB_PID" "$WORKER_PID" "$TRAINING_PID"
