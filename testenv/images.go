package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// imageSpec is one image assembled from a binary of this machine: the
// binary (symbols stripped) at /NAME, the shared libraries it loads at
// their own paths, and the CA bundle, run as user 65532 like docker/'s
// images. Nothing is pulled: the image goes straight into the node's
// containerd under the name the chart uses.
type imageSpec struct {
	ref    string
	binary string
	cmd    []string
}

func pauseImageSpec(c *config) imageSpec { return imageSpec{ref: pauseImage, binary: c.pauseBin} }

// cmdImport is `nur-testenv import-image --dir D --image REF=BINARY[,ARG...] ...`:
// assembles each image and imports it into the running node's containerd.
func cmdImport(args []string) int {
	var images multiFlag
	fs := flag.NewFlagSet("import-image", flag.ExitOnError)
	dir := fs.String("dir", ".testenv", "state directory of a running `up`")
	fs.Var(&images, "image", "REF=BINARY[,CMD-ARG...]: an image with BINARY as its entrypoint (repeatable)")
	_ = fs.Parse(args)
	c := &config{dir: *dir}
	if abs, err := filepath.Abs(c.dir); err == nil {
		c.dir = abs
	}
	sock := filepath.Join(c.dir, "node", "containerd.sock")
	if !fileExists(sock) {
		fmt.Fprintf(os.Stderr, "nur-testenv: no real node is running under %s (it needs root and containerd; see %s)\n", c.dir, filepath.Join(c.dir, "logs", "testenv.log"))
		return 1
	}
	var specs []imageSpec
	for _, im := range images {
		ref, rest, ok := strings.Cut(im, "=")
		if !ok {
			fatalf("--image %q: want REF=BINARY[,ARG...]", im)
		}
		parts := strings.Split(rest, ",")
		specs = append(specs, imageSpec{ref: ref, binary: parts[0], cmd: parts[1:]})
	}
	start := time.Now()
	if err := importImages(c, sock, specs); err != nil {
		fmt.Fprintf(os.Stderr, "nur-testenv: %v\n", err)
		return 1
	}
	fmt.Printf("nur-testenv: imported %d images in %s\n", len(specs), time.Since(start).Round(time.Millisecond))
	return 0
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// importImages assembles each image and imports it with ctr into the
// k8s.io namespace, where the kubelet finds it.
func importImages(c *config, sock string, specs []imageSpec) error {
	dir := filepath.Join(c.dir, "node", "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, s := range specs {
		archive := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(s.ref)+".tar")
		if err := writeImage(s, archive); err != nil {
			return fmt.Errorf("image %s from %s: %w", s.ref, s.binary, err)
		}
		if err := run("ctr", "--address", sock, "--namespace", "k8s.io", "images", "import", archive); err != nil {
			return fmt.Errorf("import %s: %w", s.ref, err)
		}
		_ = os.Remove(archive)
	}
	return nil
}

// writeImage writes the image as a docker-archive tarball.
func writeImage(s imageSpec, archive string) error {
	layerTar, err := imageLayer(s.binary)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Entrypoint = []string{"/" + filepath.Base(s.binary)}
	cfg.Config.Cmd = s.cmd
	cfg.Config.User = "65532:65532"
	cfg.Config.Env = []string{"PATH=/", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return err
	}
	ref, err := name.NewTag(s.ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(archive, ref, img)
}

// imageLayer is the one layer: the stripped binary, its libraries (as ldd
// finds them) and the CA bundle.
func imageLayer(binary string) ([]byte, error) {
	stripped, err := os.CreateTemp("", "nur-image-*")
	if err != nil {
		return nil, err
	}
	stripped.Close()
	defer os.Remove(stripped.Name())
	if err := run("strip", "--strip-debug", "-o", stripped.Name(), binary); err != nil {
		return nil, err
	}
	files := map[string]string{"/" + filepath.Base(binary): stripped.Name()}
	libs, err := sharedLibraries(binary)
	if err != nil {
		return nil, err
	}
	for _, l := range libs {
		files[l] = l
	}
	if ca := "/etc/ssl/certs/ca-certificates.crt"; fileExists(ca) {
		files[ca] = ca
	}
	return tarFiles(files)
}

var lddPath = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// sharedLibraries lists the absolute paths ldd resolves for binary (none
// for a static one).
func sharedLibraries(binary string) ([]string, error) {
	out, err := exec.Command("ldd", binary).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") || strings.Contains(string(out), "statically linked") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %v: %s", binary, err, out)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "not found") {
			return nil, fmt.Errorf("ldd %s: %s", binary, strings.TrimSpace(line))
		}
		if m := lddPath.FindStringSubmatch(line); m != nil {
			libs = append(libs, m[1])
		}
	}
	return libs, nil
}

// tarFiles writes each source file (symlinks followed) at its path in the
// image, with its parent directories, in a fixed order and with fixed
// times so that the same inputs give the same layer.
func tarFiles(files map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	dirs := map[string]bool{}
	epoch := time.Unix(0, 0)
	for _, p := range paths {
		var parents []string
		for d := filepath.Dir(p); d != "/" && !dirs[d]; d = filepath.Dir(d) {
			parents = append([]string{d}, parents...)
			dirs[d] = true
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch}); err != nil {
				return nil, err
			}
		}
		b, err := os.ReadFile(files[p])
		if err != nil {
			return nil, err
		}
		mode := int64(0o644)
		if st, err := os.Stat(files[p]); err == nil && st.Mode()&0o111 != 0 {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
