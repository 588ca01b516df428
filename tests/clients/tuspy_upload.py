"""Uploads a file to a satchel upload URL with tuspy (PyPI), as a Python client would.

    tuspy_upload.py URL FILE CHUNK_BYTES [all|first|resume]

all: create the upload and send every chunk; first: create it and send one chunk; resume:
go on with the upload at URL from the offset its HEAD gives. Each chunk carries a SHA-1
Upload-Checksum. Prints {"url", "offset"} as JSON.
"""
import json
import sys

from tusclient import client

url, path, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "all"
tus = client.TusClient(url)
if mode == "resume":
    uploader = tus.uploader(file_path=path, url=url, chunk_size=chunk, upload_checksum=True)
else:
    uploader = tus.uploader(
        file_path=path,
        chunk_size=chunk,
        metadata={"filename": "tuspy.bin"},
        upload_checksum=True,
    )
if mode == "first":
    uploader.upload_chunk()
else:
    uploader.upload()
print(json.dumps({"url": uploader.url, "offset": uploader.offset}))
