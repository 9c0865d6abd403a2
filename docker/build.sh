#!/usr/bin/env bash
# Builds the nur-operator, nur-worker and nur-gateway images from docker/Dockerfile with
# whichever of docker (with a running daemon), podman or buildah is here;
# says what is missing otherwise. `make images` runs it.
#
#   IMAGE_REGISTRY  default ghcr.io/nur-dev
#   IMAGE_TAG       default the chart's appVersion (charts/nur/Chart.yaml)
#   IMAGE_TOOL      docker | podman | buildah (default: the first that works)
#   IMAGE_PLATFORM  default linux/amd64 (the Dockerfile builds x86_64 musl)
set -euo pipefail
cd "$(dirname "$0")/.."

registry=${IMAGE_REGISTRY:-ghcr.io/nur-dev}
tag=${IMAGE_TAG:-$(sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/nur/Chart.yaml)}
platform=${IMAGE_PLATFORM:-linux/amd64}
# Timestamps in the images come from the last commit, not the clock.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

tool=${IMAGE_TOOL:-}
if [[ -z $tool ]]; then
  why=()
  if command -v docker >/dev/null; then
    if docker info >/dev/null 2>&1; then tool=docker; else why+=("docker is installed but no daemon answers (docker info fails)"); fi
  else
    why+=("no docker")
  fi
  if [[ -z $tool ]]; then
    if command -v podman >/dev/null; then tool=podman; else why+=("no podman"); fi
  fi
  if [[ -z $tool ]]; then
    if command -v buildah >/dev/null; then tool=buildah; else why+=("no buildah"); fi
  fi
  if [[ -z $tool ]]; then
    msg=$(printf '%s; ' "${why[@]}")
    printf 'make images: cannot build container images here: %s.\n' "${msg%; }" >&2
    echo 'Install docker (with its daemon), podman or buildah, or set IMAGE_TOOL.' >&2
    exit 1
  fi
fi

for target in operator worker gateway; do
  image="$registry/nur-$target:$tag"
  echo "==> $image ($tool)"
  case $tool in
    docker)
      DOCKER_BUILDKIT=1 docker build --platform "$platform" -f docker/Dockerfile \
        --target "$target" --build-arg SOURCE_DATE_EPOCH --build-arg VERSION="$tag" \
        -t "$image" . ;;
    podman|buildah)
      "$tool" build --platform "$platform" -f docker/Dockerfile \
        --target "$target" --build-arg SOURCE_DATE_EPOCH --build-arg VERSION="$tag" \
        --timestamp "$SOURCE_DATE_EPOCH" -t "$image" . ;;
    *) echo "make images: unknown IMAGE_TOOL $tool" >&2; exit 1 ;;
  esac
done
