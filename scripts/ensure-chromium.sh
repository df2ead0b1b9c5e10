#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the browser tests (tests/browser).
# Playwright's own browser download cannot work on these machines: the tests drive this binary
# through the playwright package instead. Run by scripts/test.sh; safe to run again.
# Installs chromium without its Recommends (those pull in systemd, udev, avahi and printing, ~100
# packages) and one small Chinese font, so that screenshots of our pages show text, not boxes.
# apt-get update runs only when the package lists don't know chromium or are too old to fetch it.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
PACKAGES=(chromium fonts-wqy-microhei)
font_installed() { dpkg-query -W -f='${Status}' fonts-wqy-microhei 2>/dev/null | grep -q ' installed'; }
[ -x "$CHROMIUM" ] && font_installed && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  [ -x "$CHROMIUM" ] && exit 0  # without the font only the screenshots suffer
  echo "!! 浏览器测试需要 $CHROMIUM，请以 root 运行: apt-get install --no-install-recommends ${PACKAGES[*]}" >&2
  echo "!! 缺少它时浏览器测试在 CI 中失败、在本地跳过" >&2
  exit 1
fi
echo "==> 安装 Debian chromium（浏览器测试用）"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
apt_get() { apt-get -qq -o DPkg::Lock::Timeout=300 "$@" >>"$log" 2>&1; }
install_packages() { apt_get install -y --no-install-recommends "${PACKAGES[@]}"; }
if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]' || ! install_packages; then
  if ! apt_get update || ! install_packages; then
    cat "$log" >&2
    echo "!! chromium 安装失败" >&2
    exit 1
  fi
fi
"$CHROMIUM" --version 2>/dev/null  # its launcher script trips over /dev/shm when that is mounted twice
