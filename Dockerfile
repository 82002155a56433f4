# fleetmeter: one image for the collector, the pipeline workers and the SQL endpoint.
# Build: docker build -t fleetmeter .   (NVML comes from the NVIDIA container toolkit at run time.)

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fleetmeter fleetmeter
COPY collectors collectors
COPY pipeline pipeline
COPY schemas schemas
COPY sql sql
COPY reports reports
COPY planning planning
COPY anomalies anomalies
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin fleetmeter \
 && mkdir -p /var/lib/fleetmeter/spool && chown fleetmeter /var/lib/fleetmeter/spool
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels fleetmeter && rm -rf /wheels
# fleetmeter/<part> are links to the folders copied above: a missing one builds a wheel without that part
RUN python -c "import fleetmeter.collectors.cli, fleetmeter.pipeline.cli, fleetmeter.sql.serve, fleetmeter.reports.cli, fleetmeter.planning.cli, fleetmeter.anomalies.cli"
USER 10001
ENV FLEETMETER_SPOOL__DIR=/var/lib/fleetmeter/spool
EXPOSE 9410 9411 9412
ENTRYPOINT ["fleetmeter"]
CMD ["--help"]
