# tests/bench/podman.sh: sourced by tests/oci/clients.sh (OCI_TEST_HOOK), inside its private namespaces, with its
# podman set up and the busybox image imported: `podman run --rm IMAGE true` with each runtime of
# BENCH_PODMAN_RUNTIMES (paths), BENCH_PODMAN_ROUNDS rounds (default 10), the runtimes' order rotating each round.
# Prints one line per runtime: "podman-bench PATH MEDIAN_MS P10_MS P90_MS N FAILED".
bench_podman() {
  local rounds=${BENCH_PODMAN_ROUNDS:-10} rts=() n i k rt t0 t1 f
  read -r -a rts <<< "$BENCH_PODMAN_RUNTIMES"
  n=${#rts[@]}
  for ((k = 0; k < n; k++)); do : > "$W/podman-bench.$k"; : > "$W/podman-bench.$k.failed"; done
  # (one untimed run each: the image's layers and podman's caches warm)
  for rt in "${rts[@]}"; do timeout 60 podman run --rm --runtime "$rt" "${PODMAN_RUN[@]}" $IMG:latest true >/dev/null 2>&1; done
  for ((i = 0; i < rounds; i++)); do
    for ((j = 0; j < n; j++)); do
      k=$(((i + j) % n))
      rt=${rts[$k]}
      t0=$EPOCHREALTIME
      if timeout 60 podman run --rm --runtime "$rt" "${PODMAN_RUN[@]}" $IMG:latest true >/dev/null 2>"$W/podman-bench.err"; then
        t1=$EPOCHREALTIME
        awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }' >> "$W/podman-bench.$k"
      else
        echo x >> "$W/podman-bench.$k.failed"
        head -n 1 "$W/podman-bench.err" >&2
      fi
    done
  done
  for ((k = 0; k < n; k++)); do
    f=$(wc -l < "$W/podman-bench.$k.failed")
    sort -n "$W/podman-bench.$k" | awk -v rt="${rts[$k]}" -v f="$f" '{ v[NR] = $1 }
      END { if (NR == 0) { printf "podman-bench %s - - - 0 %d\n", rt, f; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            p10 = v[int((NR - 1) * 0.1) + 1]; p90 = v[int((NR - 1) * 0.9) + 1]
            printf "podman-bench %s %.2f %.2f %.2f %d %d\n", rt, m, p10, p90, NR, f }'
  done
}
bench_podman
