# Sourced by the device scripts (gpu-h100.sh, train-h100.sh): what a bare NVIDIA machine (the driver, no Node.js,
# no Vulkan loader) needs before the benchmarks run. Run from the repository root.

# The Vulkan loader and glvnd from the carried .gl/*.deb where the machine lacks them, and the NVIDIA ICD and EGL
# vendor files the driver mount provides.
setup_vulkan() {
  if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
    if ls .gl/*.deb >/dev/null 2>&1; then
      for f in .gl/*.deb; do dpkg -x "$f" /; done
      ldconfig
    else
      echo "no libvulkan.so.1 and no .gl/*.deb to unpack: carry the Vulkan loader .debs in .gl/" >&2
      return 1
    fi
  fi
  export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
  if [ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ]; then
    export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
  fi
}

# prepare-carry.sh ships node and dawn.node xz-compressed; python3 (always there) unpacks them. Sets NODE (default
# .dev/node; a local test sets it to the machine's node) and fails when it does not run.
unpack_node_and_dawn() {
  unxz_py() { python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"; }
  if [ -z "${NODE:-}" ]; then
    [ -f .dev/node.xz ] && [ ! -x .dev/node ] && unxz_py .dev/node.xz .dev/node && chmod +x .dev/node
    NODE=.dev/node
  fi
  local dawn=.dev/node_modules/webgpu/dist/linux-x64/dawn.node
  [ -f "$dawn.xz" ] && [ ! -f "$dawn" ] && unxz_py "$dawn.xz" "$dawn"
  [ -x "$NODE" ] || chmod +x "$NODE" 2>/dev/null || true
  if ! "$NODE" --version >/dev/null 2>&1; then echo "no runnable node at $NODE (set NODE=…)" >&2; return 1; fi
}

# The command that runs bench/$1.ts: the esbuild bundle prepare-carry.sh made (no tsx needed), else the source.
ts_cmd() { if [ -f ".dev/$1.mjs" ]; then echo "$NODE .dev/$1.mjs"; else echo "$NODE --import tsx bench/$1.ts"; fi; }
