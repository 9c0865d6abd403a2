# images.mk: container images of nur-operator, nur-worker and nur-gateway
# (docker/Dockerfile). Included by the root Makefile.
#   make images     build all three with docker, podman or buildah, whichever works
# IMAGE_REGISTRY, IMAGE_TAG, IMAGE_TOOL and IMAGE_PLATFORM are passed on
# (docker/build.sh).

.PHONY: images
images:
	docker/build.sh
