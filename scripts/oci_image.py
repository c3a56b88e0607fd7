#!/usr/bin/env python3
"""Writes reproducible OCI image layouts for scripts/oci-image (standard library only).

  oci_image.py filter WASM DIR [--version V]
      The filter as a Wasm image in the "compat" variant that Istio (WasmPlugin) and Envoy
      Gateway (EnvoyExtensionPolicy) load: one tar+gzip layer holding `plugin.wasm`, the
      manifest annotated `module.wasm.image/variant: compat`.
  oci_image.py proxy BINARY LIVEZ DIR [--version V]
      `headroom` as a container image: the binary, a small /livez probe, the shared libraries
      both need (copied from this machine, found with ldd), /etc/passwd and /etc/group with a
      non-root user, a writable /var/lib/headroom; config with User 65532, HEADROOM_HOST=0.0.0.0
      and Docker's Healthcheck extension.

Both print the manifest digest (`sha256:…`: what registries, WasmPlugin.spec.sha256 and
EnvoyExtensionPolicy's image.sha256 name) on stdout, and nothing else.

Reproducible: the same inputs give the same bytes. Tar entries are sorted, owned by 0:0 (or the
image user), with mtime SOURCE_DATE_EPOCH (default 0) and no user/group names; gzip carries no file
name and mtime 0; JSON is written with sorted keys; the config has no "created" time unless
SOURCE_DATE_EPOCH is set. The gzip bytes depend on the zlib version (the layer's diff_id, the
uncompressed tar's digest, does not).
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

IMAGE_USER = 65532  # the "nonroot" uid/gid of distroless images
STATE_DIR = "/var/lib/headroom"
SOURCE = "https://github.com/headroom-for-gateways/headroom"


def epoch():
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    return int(value) if value else 0


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Layer:
    """An uncompressed tar built in memory from (path, kind, data, mode, uid) entries."""

    def __init__(self):
        self.entries = {}

    def dir(self, path, mode=0o755, uid=0):
        self.entries[path.strip("/")] = ("dir", b"", mode, uid)

    def file(self, path, data, mode=0o644, uid=0):
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            self.entries.setdefault(parent, ("dir", b"", 0o755, 0))
        self.entries[path] = ("file", data, mode, uid)

    def tar(self):
        buf = io.BytesIO()
        mtime = epoch()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries):
                kind, data, mode, uid = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mode = mode
                info.uid = info.gid = uid
                info.uname = info.gname = ""
                info.mtime = mtime
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()


def gzip_bytes(data):
    out = io.BytesIO()
    # filename="" and mtime=0: no name, no time in the gzip header.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return out.getvalue()


class Layout:
    """An OCI image layout directory (image-layout 1.0.0)."""

    def __init__(self, root):
        self.root = root
        if os.path.exists(root):
            # Only ever a layout this script wrote (or an empty directory).
            if os.listdir(root) and not os.path.exists(os.path.join(root, "oci-layout")):
                sys.exit(f"oci_image.py: {root} exists and is not an OCI layout; not touching it")
            shutil.rmtree(root)
        os.makedirs(os.path.join(root, "blobs", "sha256"))

    def blob(self, data, media_type, annotations=None):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.root, "blobs", "sha256", digest), "wb") as f:
            f.write(data)
        desc = {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}
        if annotations:
            desc["annotations"] = annotations
        return desc

    def finish(self, manifest_desc):
        with open(os.path.join(self.root, "oci-layout"), "wb") as f:
            f.write(canonical({"imageLayoutVersion": "1.0.0"}))
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [manifest_desc]}
        with open(os.path.join(self.root, "index.json"), "wb") as f:
            f.write(canonical(index))


def write_image(out_dir, layer, config_body, manifest_annotations, version):
    layout = Layout(out_dir)
    tar = layer.tar()
    layer_desc = layout.blob(gzip_bytes(tar), OCI_LAYER_GZIP)
    config_body["rootfs"] = {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]}
    if os.environ.get("SOURCE_DATE_EPOCH", "").strip():
        config_body["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch()))
    config_desc = layout.blob(canonical(config_body), OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
        "annotations": manifest_annotations,
    }
    manifest_desc = layout.blob(
        canonical(manifest),
        OCI_MANIFEST,
        # The tag `skopeo copy oci:DIR:TAG` and other tools find the image by.
        {"org.opencontainers.image.ref.name": version},
    )
    layout.finish(manifest_desc)
    return manifest_desc["digest"]


def common_annotations(title, version):
    return {
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.source": SOURCE,
    }


def build_filter(args):
    with open(args.wasm, "rb") as f:
        wasm = f.read()
    if wasm[:4] != b"\0asm":
        sys.exit(f"oci_image.py: {args.wasm} is not a WebAssembly module")
    layer = Layer()
    layer.file("plugin.wasm", wasm)
    annotations = common_annotations("headroom-filter", args.version)
    annotations["module.wasm.image/variant"] = "compat"
    config = {
        # GOARCH/GOOS spellings of a WASI preview 1 module; nothing runs it as a container.
        "architecture": "wasm",
        "os": "wasip1",
        "config": {"Labels": dict(annotations)},
    }
    return write_image(args.dir, layer, config, annotations, args.version)


def needed_libraries(paths):
    """The shared objects (and the dynamic loader) the ELF files `paths` load, by ldd."""
    found = {}
    for path in paths:
        out = subprocess.run(["ldd", path], check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            line = line.strip()
            if "=>" in line:
                target = line.split("=>", 1)[1].strip().split(" ")[0]
            else:
                target = line.split(" ")[0]
            if target.startswith("/"):
                found[target] = os.path.realpath(target)
            elif line and not line.startswith("linux-vdso") and "not found" in line:
                sys.exit(f"oci_image.py: {path}: {line}")
    return found


def debian_package(path):
    """`package=version` of the Debian package that owns `path`, or None off Debian."""
    for candidate in (path, "/usr" + path):
        try:
            owner = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        except FileNotFoundError:
            return None
        if owner.returncode == 0:
            package = owner.stdout.split(":", 1)[0].strip()
            version = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True
            ).stdout.strip()
            return f"{package}={version}"
    return None


def build_proxy(args):
    layer = Layer()
    with open(args.binary, "rb") as f:
        layer.file("usr/local/bin/headroom", f.read(), mode=0o755)
    with open(args.livez, "rb") as f:
        layer.file("usr/local/bin/headroom-livez", f.read(), mode=0o755)
    packages = set()
    for path, real in sorted(needed_libraries([args.binary, args.livez]).items()):
        with open(real, "rb") as f:
            layer.file(path, f.read(), mode=0o755)
        package = debian_package(real)
        if package:
            packages.add(package)
    layer.file(
        "etc/passwd",
        f"root:x:0:0:root:/root:/sbin/nologin\n"
        f"nonroot:x:{IMAGE_USER}:{IMAGE_USER}:headroom:{STATE_DIR}:/sbin/nologin\n".encode(),
    )
    layer.file("etc/group", f"root:x:0:\nnonroot:x:{IMAGE_USER}:\n".encode())
    layer.dir("tmp", mode=0o1777)
    layer.dir("var", mode=0o755)
    layer.dir("var/lib", mode=0o755)
    layer.dir(STATE_DIR, mode=0o755, uid=IMAGE_USER)
    annotations = common_annotations("headroom", args.version)
    labels = dict(annotations)
    if packages:
        labels["io.headroom.runtime-libraries"] = " ".join(sorted(packages))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{IMAGE_USER}:{IMAGE_USER}",
            "Env": [
                "PATH=/usr/local/bin",
                f"HOME={STATE_DIR}",
                "HEADROOM_HOST=0.0.0.0",
                "HEADROOM_PORT=8787",
                f"HEADROOM_WORKSPACE_DIR={STATE_DIR}",
                f"HEADROOM_CACHE_DIR={STATE_DIR}/cache",
            ],
            "Entrypoint": ["/usr/local/bin/headroom"],
            "Cmd": ["proxy"],
            "WorkingDir": STATE_DIR,
            "ExposedPorts": {"8787/tcp": {}},
            "Volumes": {STATE_DIR: {}},
            "StopSignal": "SIGTERM",
            "Labels": labels,
            # Docker's extension of the image config (the OCI config has no healthcheck): docker
            # and podman run it; Kubernetes ignores it (use a livenessProbe on /livez). Durations
            # in nanoseconds. The first start compiles the filter (cached on disk afterwards).
            "Healthcheck": {
                "Test": ["CMD", "/usr/local/bin/headroom-livez"],
                "Interval": 30_000_000_000,
                "Timeout": 5_000_000_000,
                "StartPeriod": 60_000_000_000,
                "Retries": 3,
            },
        },
    }
    return write_image(args.dir, layer, config, annotations, args.version)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    f = sub.add_parser("filter")
    f.add_argument("wasm")
    f.add_argument("dir")
    f.add_argument("--version", default="0.1.0")
    p = sub.add_parser("proxy")
    p.add_argument("binary")
    p.add_argument("livez")
    p.add_argument("dir")
    p.add_argument("--version", default="0.1.0")
    args = parser.parse_args()
    digest = build_filter(args) if args.kind == "filter" else build_proxy(args)
    print(digest)


if __name__ == "__main__":
    main()
