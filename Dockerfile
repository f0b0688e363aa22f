# Multi-stage build: a static kpush binary on a distroless base, running as
# the unprivileged "nonroot" user (uid 65532). One image serves every role;
# the command picks it (queued, worker, apns-sim, up, ...).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/kpush ./cmd/kpush \
 && mkdir -p /out/data /out/tls

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kpush /usr/local/bin/kpush
# Pre-create the volume mount points owned by nonroot, so named volumes
# mounted there inherit an owner the daemon can write as.
COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=build --chown=65532:65532 /out/tls /tls
USER 65532:65532
EXPOSE 22133 22134 2197
ENTRYPOINT ["/usr/local/bin/kpush"]
CMD ["queued", "--listen", "0.0.0.0:22133", "--data-dir", "/data/queued"]
