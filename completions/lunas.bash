# bash completion for lunas: commands, their options, and what an option takes (files, directories, pids,
# network namespace names). Installed by `make install` into share/bash-completion/completions/lunas.

_lunas_run_options="--add-seccomp-fd --allow-out --apparmor --args --argv0 --as-pid-1 --assert-userns-disabled --bind --bind-data --bind-fd
  --bind-try --block-fd --cap-add --cap-drop --chdir --chmod --clearenv --cpu --cpu-weight --cpuset --default-tree
  --deny-out --dev --dev-bind --dev-bind-try --die-with-parent --dir --disable-userns --exec-label --file
  --file-label --firewall --gid --help --host-root
  --hostname --info-fd --json-status --json-status-fd --keep-env --landlock-bind --landlock-connect --landlock-ro
  --landlock-rw --landlock-strict --limits-best-effort --lock-file --mask --memory --memory-high --mqueue --name --net
  --new-session --no-die-with-parent --no-harden --no-seccomp --overlay --overlay-src --perms --pidns --pids --proc
  --remount-ro --ro-bind --ro-bind-data --ro-bind-fd --ro-bind-try --ro-overlay --ro-view --ro-view-try --rootfs
  --seccomp --seccomp-allow --seccomp-deny --seccomp-show --selinux-label --selinux-mount-label --setenv
  --share-abstract-sockets --share-keyring
  --share-net --share-session --size --stop-timeout --swap --symlink --sync-fd --timeout --tmp-overlay --tmpfs --uid
  --unsetenv --unshare-all --unshare-cgroup --unshare-cgroup-try --unshare-ipc --unshare-net --unshare-pid
  --unshare-user --unshare-user-try --unshare-uts --usage --userns --userns-block-fd --userns2"
_lunas_bwrap_options="--add-seccomp-fd --args --argv0 --as-pid-1 --assert-userns-disabled --bind --bind-data
  --bind-fd --bind-try --block-fd --cap-add --cap-drop --chdir --chmod --clearenv --dev --dev-bind --dev-bind-try
  --die-with-parent --dir --disable-userns --exec-label --file --file-label --gid --help --hostname --info-fd
  --json-status-fd --level-prefix --lock-file --mqueue --new-session --overlay --overlay-src --perms --pidns --proc
  --remount-ro --ro-bind --ro-bind-data --ro-bind-fd --ro-bind-try --ro-overlay --seccomp --setenv --share-net
  --size --symlink --sync-fd --tmp-overlay --tmpfs --uid --unsetenv --unshare-all --unshare-cgroup
  --unshare-cgroup-try --unshare-ipc --unshare-net --unshare-pid --unshare-user --unshare-user-try --unshare-uts
  --userns --userns-block-fd --userns2 --version"
# lunas audit: run's options but those about one payload's run, and its own
_lunas_audit_options="$(printf '%s\n' $_lunas_run_options | grep -vxE -- '--(seccomp-show|json-status|json-status-fd|info-fd|usage|stop-timeout|userns|pidns|userns-block-fd|block-fd|sync-fd)' | tr '\n' ' ')
  --json --print-probe --probe --probe-path --recipe --wrap"
_lunas_enter_options="--all --cgroup --help --ipc --mount --net --pid --root --stop-timeout --time --user --uts --wd"
_lunas_ns_options="--help --json --type"
_lunas_lab_show_options="--dot --help --json"
_lunas_lab_list_options="--help --json"
_lunas_lab_down_options="--all --help"
_lunas_gc_options="--dry-run --help --json"
_lunas_ps_options="--help --json --labs --sandboxes"
_lunas_top_options="--help --interval --labs --sandboxes --sort"
_lunas_stats_options="--help --interval --json --labs --output --prometheus --sandboxes"
_lunas_events_options="--count --help --json --labs --sandboxes --timeout"
_lunas_seccomp_groups="mount module raw-io reboot swap clock debug perf bpf keyring userfaultfd obsolete privileged
  namespaces userns tty io_uring vsock suid ldt personality lease"

_lunas() {
  local cur prev command i
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  command=
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --) return 0 ;;  # the command's own arguments: leave them to bash's default
      run|audit|enter|ns|lab|gc|bwrap|oci|ps|top|stats|events) command=${COMP_WORDS[i]}; break ;;
    esac
  done
  # (after the command's options, -- starts the command to run: its words are bash's default too)
  local j
  for ((j = i + 1; j < COMP_CWORD; j++)); do
    [[ ${COMP_WORDS[j]} == -- ]] && return 0
  done
  if [[ -z $command ]]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "-e -i --lua-env --version --help" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "run audit enter ns lab gc ps top stats events bwrap oci" -- "$cur") \
        $(compgen -f -X '!*.lua' -- "$cur"))
    fi
    return 0
  fi
  case $command in
    run)
      case $prev in
        --bind|--ro-bind|--dev-bind|--bind-try|--ro-bind-try|--dev-bind-try|--ro-view|--ro-view-try|--rootfs|\
        --chdir|--overlay-src|--tmpfs|\
        --dir|--remount-ro|--mask|--proc|--dev|--mqueue|--landlock-ro|--landlock-rw|--json-status)
          COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
        --seccomp|--firewall) COMPREPLY=($(compgen -f -X '!*.lua' -- "$cur")); return 0 ;;
        --net) COMPREPLY=($(compgen -W "none host nat pasta" -- "$cur")); return 0 ;;
        --seccomp-deny|--seccomp-allow) COMPREPLY=($(compgen -W "$_lunas_seccomp_groups" -- "$cur")); return 0 ;;
        --cap-add|--cap-drop)
          COMPREPLY=($(compgen -W "ALL $(sed -n 's/^\s*#define CAP_\([A-Z_]*\)\s\+[0-9]\+$/CAP_\1/p' \
            /usr/include/linux/capability.h 2>/dev/null)" -- "$cur")); return 0 ;;
      esac
      COMPREPLY=($(compgen -W "$_lunas_run_options --" -- "$cur")) ;;
    audit)
      case $prev in
        --recipe) COMPREPLY=($(compgen -f -X '!*.lua' -- "$cur")); return 0 ;;
        --probe|--bind|--ro-bind|--dev-bind|--bind-try|--ro-bind-try|--dev-bind-try|--ro-view|--ro-view-try|\
        --rootfs|--chdir|--overlay-src|--tmpfs|--dir|--remount-ro|--mask|--proc|--dev|--mqueue|--landlock-ro|\
        --landlock-rw)
          COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
        --seccomp) COMPREPLY=($(compgen -f -X '!*.lua' -- "$cur")); return 0 ;;
        --seccomp-deny|--seccomp-allow) COMPREPLY=($(compgen -W "$_lunas_seccomp_groups" -- "$cur")); return 0 ;;
      esac
      COMPREPLY=($(compgen -W "$_lunas_audit_options" -- "$cur")) ;;
    bwrap)
      case $prev in
        --bind|--ro-bind|--dev-bind|--bind-try|--ro-bind-try|--dev-bind-try|--chdir|--overlay-src|--tmpfs|--dir|\
        --remount-ro|--proc|--dev|--mqueue|--lock-file)
          COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
      esac
      COMPREPLY=($(compgen -W "$_lunas_bwrap_options --" -- "$cur")) ;;
    oci)
      COMPREPLY=($(compgen -W "create start run state kill delete exec ps pause resume list update spec features
        --root --log --log-format --systemd-cgroup --debug --rootless --version --help" -- "$cur")) ;;
    enter)
      if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$_lunas_enter_options --" -- "$cur"))
      else
        COMPREPLY=($(compgen -W "$(ls /run/netns 2>/dev/null) $(ls /proc | grep '^[0-9]')" -- "$cur"))
      fi ;;
    ns)
      if [[ $prev == ns ]]; then COMPREPLY=($(compgen -W "list" -- "$cur"))
      elif [[ $prev == --type || $prev == -t ]]; then
        COMPREPLY=($(compgen -W "user pid mount uts ipc net cgroup time" -- "$cur"))
      else COMPREPLY=($(compgen -W "$_lunas_ns_options" -- "$cur")); fi ;;
    lab)
      local sub=${COMP_WORDS[i+1]}
      if ((COMP_CWORD == i + 1)); then COMPREPLY=($(compgen -W "up down show list" -- "$cur")); return 0; fi
      case $sub in
        up) ((COMP_CWORD == i + 2)) && COMPREPLY=($(compgen -f -X '!*.lua' -- "$cur")) ;;
        down|show)
          if [[ $cur == -* ]]; then
            local var=_lunas_lab_${sub}_options
            COMPREPLY=($(compgen -W "${!var}" -- "$cur"))
          else
            COMPREPLY=($(compgen -W "$(ls /run/lunas/labs 2>/dev/null)" -- "$cur"))
          fi ;;
        list) COMPREPLY=($(compgen -W "$_lunas_lab_list_options" -- "$cur")) ;;
      esac ;;
    gc) COMPREPLY=($(compgen -W "$_lunas_gc_options" -- "$cur")) ;;
    ps|top|stats|events)
      case $prev in
        --sort) COMPREPLY=($(compgen -W "cpu memory pids network" -- "$cur")); return 0 ;;
        --output) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
        --interval|--count|--timeout) return 0 ;;
      esac
      if [[ $cur == -* ]]; then
        local var=_lunas_${command}_options
        COMPREPLY=($(compgen -W "${!var}" -- "$cur"))
      else
        # the names of the running sandboxes and labs
        COMPREPLY=($(compgen -W "$(ls /run/lunas/sandboxes /run/lunas/labs ${XDG_RUNTIME_DIR:+$XDG_RUNTIME_DIR/lunas/sandboxes} 2>/dev/null | grep -v '^\.\|:$')" -- "$cur"))
      fi ;;
  esac
}
complete -o default -F _lunas lunas
