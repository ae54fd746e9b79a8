# scripts/lib/stragglers_part.sh — the straggler part of scripts/bench-scaling (issue 23, "no
# waiting on the slowest"); sourced by it after its helpers (wait_idle, the run clock,
# finish_run, shape_links, live_pids, progress) and its options (straggler_*).
#
# Fleets, each with `--balance off` and `--balance on`, one record per run in stragglers.jsonl:
#   w8-*   (emulated, namespaces): `recur serve` in its own namespace, W = 8 workers in one each,
#          S = 8 shards beside them, links shaped alike (--straggler-link); LSTM 1×128, 64 chunks
#          of one stream (T = 64). Workers emulate their compute: `--emulate-compute 1` (a 1 ms
#          step, so no real forward and backward competes for the two cores) plus
#          `--emulate-chunk-ms 10` per chunk they own. w8-equal: all alike; w8-slow: one 4× slow
#          throughout; w8-transient: one 4× slow for global steps 20–40 (--emulate-slowdown).
#   w8s1-* (emulated, namespaces): the same three fleets with one parameter server (the
#          coordinator, no shards), where chunks are also re-issued within a step.
#   w4-*   (emulated, loopback): W = 4 over 8 chunks, --emulate-chunk-ms 50 on all (w4-equal)
#          or 50,50,50,200 (w4-slow), the fleet of BalanceTests and of the issue.
#   pair-* (real compute, loopback): LSTM 2×256, 16 chunks of 2 streams, `--threads 1`
#          workers. pair-solo-fast and pair-solo-throttled: one worker alone, the second one
#          stopped for half of every --straggler-duty-ms (10) ms (scripts/lib/duty_cycle.py,
#          SIGSTOP/SIGCONT; a stopped worker also answers late, so a long period slows its
#          messages as well as its compute);
#          pair-throttled: both together. The fleet's total speed is the sum of the two solo
#          throughputs, measured in the same sweep, right before.
# Each run has a fixed step count (--straggler-steps, 60; the pair 2 + 30) and a timeout
# (`timeout 300` on every process); runs that would start after --straggler-budget s are
# skipped with a note. Real-compute runs wait up to --straggler-idle-wait s (60) each for the
# CPUs to be below --idle-threshold.

straggler_raw="$out/stragglers.jsonl"
straggler_note="" straggler_failed=() straggler_skipped=0

# Runs `command...` in namespace `ns`, or here when `ns` is empty (loopback runs).
in_ns() {  # ns command...
  local ns=$1
  shift
  if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi
}

# The pid of the recur process (the binary run, whatever its file is called) below `pid`
# (`timeout`, `env` and `ip netns exec` stand between the shell's job and recur, and a SIGSTOP
# must reach recur itself); waits at most 5 s for it.
recur_below() {  # pid
  local i queue c
  for ((i = 0; i < 50; i++)); do
    queue=("$1")
    while [ ${#queue[@]} -gt 0 ]; do
      c=${queue[0]} queue=("${queue[@]:1}")
      [ "$(readlink "/proc/$c/exe" 2>/dev/null)" = "$(readlink -f "$binary")" ] && { echo "$c"; return 0; }
      queue+=($(cat /proc/"$c"/task/*/children 2>/dev/null))
    done
    sleep 0.1
  done
  return 1
}

# One run of a fleet. `chunk_ms` and `slowdowns` are comma lists, one entry per worker
# ("-" for none); `throttle` is the 1-based index of a worker to throttle (0: none); `where`
# is netns (the coordinator in the first namespace, worker n and shard n in namespace n + 1) or
# loopback. Writes one record to stragglers.jsonl; a failed run is noted and the part goes on.
run_straggler() {  # fleet emulated(true|false) balance(on|off) workers shards steps warmup model-args chunk_ms slowdowns throttle where
  local fleet=$1 emulated=$2 balance=$3 w=$4 s=$5 steps=$6 warm=$7 model=$8 chunk_ms=$9 slowdowns=${10} throttle=${11} where=${12}
  local n pids=() log shard_flags=() endpoints=() ms=() slow=() coordinator_ns="" address=127.0.0.1 worker_ns extra duty_pid=""
  if [ $((SECONDS - straggler_started)) -ge "$straggler_budget" ]; then straggler_skipped=$((straggler_skipped + 1)); return 0; fi
  IFS=, read -r -a ms <<<"$chunk_ms"
  IFS=, read -r -a slow <<<"$slowdowns"
  port=$((port + 1))
  log="$work/straggler-$port"
  if [ "$where" = netns ]; then coordinator_ns=${netns_nodes[0]} address=${netns_addresses[0]}; fi
  if [ "$emulated" = true ]; then
    wait_idle
  else
    # Real compute on two cores measures the cores: wait up to --straggler-idle-wait s for
    # a quiet machine, whatever the sweep's idle budget has left.
    local saved_wait=$idle_wait saved_budget=$idle_budget
    idle_wait=$straggler_idle_wait idle_budget=$((idle_waited + straggler_idle_wait))
    wait_idle
    idle_wait=$saved_wait idle_budget=$saved_budget
  fi
  start_run_clock
  if [ "$s" -gt 1 ]; then
    for ((n = 1; n <= s; n++)); do
      endpoints+=("tcp://${netns_addresses[n]}:$((port + 1000))")
      ip netns exec "${netns_nodes[n]}" timeout 300 "$binary" shard --bind "${endpoints[n - 1]}" --insecure \
        --heartbeat-timeout 30 >"$log.shard$n" 2>&1 &
      pids+=($!) live_pids+=($!)
    done
    shard_flags=(--shards "$s" --shard-endpoints "$(IFS=,; echo "${endpoints[*]}")")
  fi
  # shellcheck disable=SC2086  # model: the fleet's word list of model flags
  in_ns "$coordinator_ns" timeout 300 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$binary" serve \
    --bind "tcp://$address:$port" --workers "$w" "${shard_flags[@]}" --data "$data" $model \
    --steps $((warm + steps)) --log-jsonl "$log.jsonl" --checkpoint-dir "" --sample-length 0 --val-fraction 0 \
    --join-timeout 60 --heartbeat-timeout 30 --insecure --balance "$balance" >"$log.out" 2>&1 &
  local serve_pid=$!
  live_pids+=("$serve_pid")
  for ((n = 1; n <= w; n++)); do
    extra=()
    [ "$emulated" = false ] || extra=(--emulate-compute 1 --emulate-chunk-ms "${ms[n - 1]}")
    [ "${slow[n - 1]:--}" = - ] || extra+=(--emulate-slowdown "${slow[n - 1]}")
    worker_ns=""
    [ -z "$coordinator_ns" ] || worker_ns=${netns_nodes[n]}
    in_ns "$worker_ns" timeout 300 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$binary" work \
      --connect "tcp://$address:$port" --threads 1 --data "$data" --heartbeat-timeout 30 "${extra[@]}" >"$log.worker$n" 2>&1 &
    pids+=($!) live_pids+=($!)
    if [ "$n" -eq "$throttle" ]; then
      local target
      target=$(recur_below "$!") || fail "no recur process below pid $! to throttle"
      python3 scripts/lib/duty_cycle.py "$target" "$(awk -v p="$straggler_duty_ms" 'BEGIN { print p / 1000 }')" 0.5 300 >"$log.duty" &
      duty_pid=$! live_pids+=($!)
    fi
  done
  finish_run "$serve_pid" "${pids[@]}"
  if [ -n "$duty_pid" ]; then stop_pid "$duty_pid"; wait "$duty_pid" 2>/dev/null || true; fi
  stop_run_clock
  if [ "$status" -ne 0 ]; then
    show_failed_run "$log"
    straggler_failed+=("$fleet balance $balance (status $status)")
    others=0   # not a disturbed run: no repeat
    return 0
  fi
  python3 - "$log.jsonl" "$log.out" "$warm" >"$work/straggler-line" <<'EOF' || fail "no step records in $log.jsonl"
import json, re, statistics, sys
path, out, warm = sys.argv[1], sys.argv[2], int(sys.argv[3])
records = [json.loads(l) for l in open(path) if l.startswith("{")]
timed = [r for r in records if r["step"] > warm]
if not timed:
    sys.exit(f"{path}: no step after {warm} warm-up steps")
moves = [l.strip() for l in open(out, errors="replace") if "rebalanced chunks at step" in l]
print(json.dumps({"timed_steps": len(timed), "total_seconds": sum(r["stepSeconds"] for r in timed),
                  "tokens": sum(r["tokens"] for r in timed),
                  "step_seconds_median": statistics.median(r["stepSeconds"] for r in timed),
                  "step_seconds": [round(r["stepSeconds"], 4) for r in timed], "rebalances": moves,
                  "reissued_chunks": sum((r.get("balancing") or {}).get("reissuedChunks", 0) for r in timed)}))
EOF
  printf '{"setting":"stragglers","fleet":"%s","round":%d,"emulated":%s,"balance":"%s","workers":%d,"shards":%d,"model":"%s","chunk_ms":"%s","slowdowns":"%s","throttled":%d,"warmup":%d,"duty_period_ms":%s,"link":"%s","link_probe":%s,"cores":%d,"busy_before_pct":%d,"others_during_pct":%d,"cpu_busy_pct":%d,"load1":%s,"duty_stops":%s,"result":%s}\n' \
    "$fleet" "$round" "$emulated" "$balance" "$w" "$s" "$model" "$chunk_ms" "$slowdowns" "$throttle" "$warm" \
    "$([ "$throttle" -gt 0 ] && echo "$straggler_duty_ms" || echo null)" \
    "$([ -n "$coordinator_ns" ] && echo "$straggler_link" || echo loopback)" "$([ -n "$coordinator_ns" ] && echo "$straggler_probe" || echo null)" "$(nproc)" "$busy" "$others" "$busy_during" "$load1" \
    "$(cat "$log.duty" 2>/dev/null | tr -d '\n' | grep . || echo null)" "$(cat "$work/straggler-line")" >>"$straggler_raw"
  progress "stragglers $fleet$([ "$emulated" = true ] && echo " (emulated)") balance $balance: $(python3 -c '
import json,sys; r=json.load(sys.stdin); print("%.2f s over %d steps, median step %.1f ms, %d rebalance(s)" % (r["total_seconds"], r["timed_steps"], 1e3*r["step_seconds_median"], len(r["rebalances"])))' <"$work/straggler-line") (CPUs ${busy}% busy before, others took ${others}% during)"
}

if part stragglers; then
  : >"$straggler_raw"
  straggler_started=$SECONDS
  w8_model="--cell lstm --layers 1 --hidden 128 --seq 64 --batch 64 --chunk 1"
  w4_model="--cell lstm --layers 1 --hidden 128 --seq 64 --batch 8 --chunk 1"
  pair_model="--cell lstm --layers 2 --hidden 256 --seq 64 --batch 32 --chunk 2"
  w8_fleets=(
    "w8-equal 10,10,10,10,10,10,10,10 -,-,-,-,-,-,-,-"
    "w8-slow 10,10,10,10,10,10,10,40 -,-,-,-,-,-,-,-"
    "w8-transient 10,10,10,10,10,10,10,10 -,-,-,-,-,-,-,4@20-40"
  )
  # The many-node part leaves its namespaces up until exit; these fleets make their own.
  if [ -n "${netns_prefix:-}" ]; then netns_delete_all; netns_nodes=() netns_addresses=(); fi
  source scripts/lib/netns.sh
  namespaces=true
  if ! reason=$(netns_supported); then
    namespaces=false
    straggler_note="W = 8 fleets skipped: $reason"
    say "$straggler_note"
  fi
  total_runs=$((total_runs + straggler_rounds * (($([ "$namespaces" = true ] && echo 12 || echo 0)) + 4) + straggler_pair_rounds * 4))
  for ((round = 1; round <= straggler_rounds; round++)); do
    # W = 4 over 8 chunks on loopback: the issue's 50,50,50,200 fleet against the equal one.
    for balance in off on; do
      with_repeats run_straggler w4-equal true "$balance" 4 1 "$straggler_w4_steps" 1 "$w4_model" 50,50,50,50 -,-,-,- 0 loopback
      with_repeats run_straggler w4-slow true "$balance" 4 1 "$straggler_w4_steps" 1 "$w4_model" 50,50,50,200 -,-,-,- 0 loopback
    done
  done
  if [ "$namespaces" = true ]; then
    ensure_packages iproute2
    netns_create 9
    shape_links "$straggler_link"
    probe_link "${netns_nodes[0]}" "${netns_nodes[1]}" "${netns_addresses[1]}" $((4 * $(parameter_count lstm 1 128))); straggler_probe=$probe
    say "stragglers (emulated): coordinator in ${netns_nodes[0]}, 8 workers and 8 shards in ${netns_nodes[1]}..${netns_nodes[8]}, links $straggler_link ($(echo "$straggler_probe" | json_field gbit_per_s | cut -c1-5) Gbit/s measured)"
    for ((round = 1; round <= straggler_rounds; round++)); do
      for fleet in "${w8_fleets[@]}"; do
        read -r name chunk_ms slowdowns <<<"$fleet"
        for balance in off on; do
          with_repeats run_straggler "$name" true "$balance" 8 8 "$straggler_steps" 1 "$w8_model" "$chunk_ms" "$slowdowns" 0 netns
          with_repeats run_straggler "${name/w8-/w8s1-}" true "$balance" 8 1 "$straggler_steps" 1 "$w8_model" "$chunk_ms" "$slowdowns" 0 netns
        done
      done
    done
    netns_delete_all
    netns_nodes=() netns_addresses=()
  fi
  # Real compute last, after a wait for a quiet machine: two cores, two workers.
  for ((round = 1; round <= straggler_pair_rounds; round++)); do
    with_repeats run_straggler pair-solo-fast false on 1 1 30 2 "$pair_model" - - 0 loopback
    with_repeats run_straggler pair-solo-throttled false on 1 1 30 2 "$pair_model" - - 1 loopback
    for balance in off on; do
      with_repeats run_straggler pair-throttled false "$balance" 2 1 30 2 "$pair_model" -,- -,- 1 loopback
    done
  done
  if [ ${#straggler_failed[@]} -gt 0 ]; then
    straggler_note="${straggler_note:+$straggler_note; }${#straggler_failed[@]} run(s) failed: $(IFS=,; echo "${straggler_failed[*]}")"
    say "$straggler_note"
  fi
  if [ "$straggler_skipped" -gt 0 ]; then
    straggler_note="${straggler_note:+$straggler_note; }$straggler_skipped run(s) skipped: past --straggler-budget $straggler_budget s"
    say "$straggler_note"
  fi
fi
