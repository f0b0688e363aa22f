# The kpush image: the static binary scripts/build makes, the host's CA
# bundle for TLS to Apple and Google, and nothing else (no shell, no
# package manager). Built FROM scratch, so it builds where no registry can
# be reached:
#
#   scripts/build      (go build, then docker build of this file)
#
# One image serves every role; the command picks it (queued, worker,
# apns-sim, enqueue, ping, drain, ...). It runs as the numeric user 65532,
# and works on a read-only root file system: queued writes only /data, the
# simulator only /tls, both meant as volumes.
FROM scratch
COPY build/docker/kpush /usr/local/bin/kpush
COPY build/docker/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Mount points owned by the user, so volumes mounted there start writable.
COPY --chown=65532:65532 build/docker/empty/ /data/
COPY --chown=65532:65532 build/docker/empty/ /tls/
USER 65532:65532
EXPOSE 22133 22134 2197 9100
ENTRYPOINT ["/usr/local/bin/kpush"]
CMD ["queued", "--listen", "0.0.0.0:22133", "--data-dir", "/data/queued"]
