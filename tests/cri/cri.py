"""A small CRI client for tests/cri.rs: what crictl does, from the Kubernetes CRI protocol
definition that the k8s-cri crate ships (stubs generated at test time by grpcio-tools).

    cri.py gen PROTO OUTDIR                 generate the Python stubs of PROTO into OUTDIR
    cri.py call STUBS SOCKET METHOD         one RuntimeService or ImageService call: the request
                                            as JSON on stdin (proto field names), the response
                                            as JSON on stdout; a gRPC error on stderr as
                                            "rpc error: CODE: DETAILS", exit status 3
    cri.py image OUT NAME ROOTFS ENTRYPOINT an OCI image archive (ctr images import) named NAME
                                            of the directory ROOTFS, with ENTRYPOINT (JSON list)
"""

import hashlib
import io
import json
import os
import sys
import tarfile


def gen(proto, outdir):
    from grpc_tools import protoc

    os.makedirs(outdir, exist_ok=True)
    include = os.path.dirname(os.path.abspath(proto))
    status = protoc.main(
        [
            "protoc",
            f"-I{include}",
            f"--python_out={outdir}",
            f"--grpc_python_out={outdir}",
            os.path.abspath(proto),
        ]
    )
    if status != 0:
        sys.exit(f"protoc failed on {proto} (status {status})")


def call(stubs, socket, method):
    sys.path.insert(0, stubs)
    import grpc
    from google.protobuf import json_format

    import v1_pb2
    import v1_pb2_grpc

    services = v1_pb2.DESCRIPTOR.services_by_name
    found = [s for s in services.values() if method in s.methods_by_name]
    if not found:
        sys.exit(f"no CRI method {method!r}")
    service = found[0]
    desc = service.methods_by_name[method]
    request = json_format.ParseDict(
        json.loads(sys.stdin.read() or "{}"), getattr(v1_pb2, desc.input_type.name)()
    )
    channel = grpc.insecure_channel(f"unix://{socket}")
    stub = getattr(v1_pb2_grpc, f"{service.name}Stub")(channel)
    try:
        response = getattr(stub, method)(request, timeout=120)
    except grpc.RpcError as e:
        print(f"rpc error: {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(3)
    print(json.dumps(json_format.MessageToDict(
                response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )))


def image(out, name, rootfs, entrypoint):
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for entry in sorted(os.listdir(rootfs)):
            t.add(os.path.join(rootfs, entry), arcname=entry)
    layer = layer.getvalue()
    with tarfile.open(out, mode="w") as archive:
        files = {}

        def add(data):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            files["blobs/sha256/" + digest[7:]] = data
            return {"digest": digest, "size": len(data)}

        layer_desc = add(layer)
        config = {
            "architecture": "amd64" if os.uname().machine == "x86_64" else "arm64",
            "os": "linux",
            "config": {"Entrypoint": json.loads(entrypoint)},
            "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        }
        config_desc = add(json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
        }
        manifest_desc = add(json.dumps(manifest).encode())
        files["oci-layout"] = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
        files["index.json"] = json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        **manifest_desc,
                        "annotations": {"io.containerd.image.name": name},
                    }
                ],
            }
        ).encode()
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def main(argv):
    commands = {"gen": (gen, 2), "call": (call, 3), "image": (image, 4)}
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        sys.exit(__doc__)
    command, _ = commands[argv[1]]
    command(*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
