package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// sweepNode removes what the real node leaves on the machine once its
// kubelet, kube-proxy and containerd have stopped (or crashed): the pods'
// processes and their containerd shims, the mounts of pods and sandboxes,
// the iptables chains of kube-proxy and the CNI, and the two bridges. It
// runs before the node starts and after it stops, and does nothing when
// there is nothing to remove.
func sweepNode(c *config) {
	killCgroup("kubepods")
	killShims(filepath.Join(c.dir, "node", "containerd.sock"))
	unmountUnder(filepath.Join(c.dir, "node"), "/run/netns/cni-", "/var/run/netns/cni-")
	removeNetns()
	removeChains("KUBE-", "CNI-")
	for _, l := range []string{cniBridge, hostBridge} {
		_ = exec.Command("ip", "link", "del", l).Run()
	}
	removeCgroups("kubepods")
	for _, d := range []string{"kubelet", "cni-state", filepath.Join("containerd", "state")} {
		_ = os.RemoveAll(filepath.Join(c.dir, "node", d))
	}
}

// killCgroup SIGKILLs every process in the cgroup (v1, every hierarchy)
// and below: the pods' containers, whatever their shims do.
func killCgroup(name string) {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	for _, h := range hierarchies {
		_ = filepath.WalkDir(h, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
}

// removeCgroups removes the (now empty) cgroups below name, leaves first.
func removeCgroups(name string) {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	for _, h := range hierarchies {
		var dirs []string
		_ = filepath.WalkDir(h, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			_ = syscall.Rmdir(d)
		}
	}
}

// killShims SIGKILLs the containerd shims serving the containerd at sock
// (they outlive containerd by design).
func killShims(sock string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		if !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for _, a := range args {
			if a == sock {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// unmountUnder detaches every mount at or below the given prefixes,
// deepest first.
func unmountUnder(prefixes ...string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		for _, p := range prefixes {
			if strings.HasPrefix(mp, p) {
				points = append(points, mp)
				break
			}
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, mp := range points {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeNetns removes the pod network namespaces containerd's CNI made.
func removeNetns() {
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		ns, _ := filepath.Glob(filepath.Join(dir, "cni-*"))
		for _, n := range ns {
			_ = os.Remove(n)
		}
	}
}

// removeChains drops every iptables chain (and every rule jumping to one)
// whose name starts with one of the prefixes, in every table, IPv4 and
// IPv6: kube-proxy's KUBE-* and the CNI plugins' CNI-*.
func removeChains(prefixes ...string) {
	for _, bin := range []string{"iptables", "ip6tables"} {
		out, err := exec.Command(bin + "-save").Output()
		if err != nil || !containsAny(string(out), prefixes) {
			continue
		}
		kept := filterChains(string(out), prefixes)
		cmd := exec.Command(bin + "-restore")
		cmd.Stdin = strings.NewReader(kept)
		_ = cmd.Run()
	}
}

// filterChains removes from iptables-save output the chains with the
// prefixes and every rule in or jumping to them.
func filterChains(save string, prefixes []string) string {
	var b strings.Builder
	for _, line := range strings.Split(save, "\n") {
		drop := false
		for _, p := range prefixes {
			if strings.HasPrefix(line, ":"+p) || strings.HasPrefix(line, "-A "+p) ||
				strings.Contains(line, " -j "+p) || strings.Contains(line, " -g "+p) {
				drop = true
				break
			}
		}
		if !drop {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
