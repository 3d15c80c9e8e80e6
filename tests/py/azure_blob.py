"""Azure Blob Storage as its owner sees it, with the Azure SDK (azure-storage-blob) against
Azurite: create a container, or print the sha256 of a blob.

usage: azure_blob.py ENDPOINT create CONTAINER
       azure_blob.py ENDPOINT sha256 CONTAINER BLOB
       azure_blob.py ENDPOINT list CONTAINER
"""
import hashlib
import sys

from azure.storage.blob import BlobServiceClient

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

endpoint, op, container = sys.argv[1], sys.argv[2], sys.argv[3]
svc = BlobServiceClient(account_url=endpoint, credential={"account_name": ACCOUNT, "account_key": KEY})
if op == "create":
    svc.create_container(container)
elif op == "sha256":
    data = svc.get_blob_client(container, sys.argv[4]).download_blob().readall()
    print(hashlib.sha256(data).hexdigest())
elif op == "list":
    for b in svc.get_container_client(container).list_blobs():
        print(b.name)
