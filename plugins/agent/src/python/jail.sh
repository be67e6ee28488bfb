# Runs a command in a new mount and network namespace (started by `unshare --net --mount`)
# where every mount is read-only except the scratch folder. Usage: jail.sh SCRATCH CMD...
scratch="$1"; shift
mount --make-rprivate / 2>/dev/null
mount --bind "$scratch" "$scratch" || exit 97
awk '{print $5}' /proc/self/mountinfo | sort -r | while read -r m; do mount -o remount,bind,ro "$m" 2>/dev/null; done
mount -o remount,bind,rw "$scratch" || exit 97
exec "$@"
