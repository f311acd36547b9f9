#include "ops/cpu/cpu_limits.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

namespace gemma_native::ops::cpu {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return f ? s.str() : std::string();
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

struct Mount {
  std::string root, point;  // the hierarchy path mounted, and where
};

// The quota in CPUs read in one cgroup directory (0: none or unreadable).
double quota_in(const std::string& dir, bool v2) {
  if (v2) {  // cpu.max: "max 100000" or "150000 100000"
    std::istringstream s(read_file(dir + "/cpu.max"));
    std::string quota;
    double period = 0;
    if (!(s >> quota >> period) || quota == "max" || period <= 0) return 0;
    const double q = std::atof(quota.c_str());
    return q > 0 ? q / period : 0;
  }
  std::istringstream q(read_file(dir + "/cpu.cfs_quota_us"));
  std::istringstream p(read_file(dir + "/cpu.cfs_period_us"));
  double quota = -1, period = 0;
  if (!(q >> quota) || !(p >> period) || quota <= 0 || period <= 0) return 0;
  return quota / period;
}

// The tightest quota from the process's cgroup directory up to the mount point.
double tightest(const std::string& root, const Mount& m, const std::string& cg_path, bool v2) {
  std::string rel = cg_path;
  if (m.root != "/" && rel.compare(0, m.root.size(), m.root) == 0) rel = rel.substr(m.root.size());
  if (rel.empty() || rel[0] != '/') rel = "/" + rel;
  double best = 0;
  for (;;) {
    const double q = quota_in(root + m.point + (rel == "/" ? "" : rel), v2);
    if (q > 0 && (best == 0 || q < best)) best = q;
    if (rel == "/" || rel.empty()) break;
    const size_t cut = rel.find_last_of('/');
    rel = cut == 0 ? "/" : rel.substr(0, cut);
  }
  return best;
}

}  // namespace

double cgroup_cpu_limit(const std::string& proc_cgroup, const std::string& mountinfo,
                        const std::string& root) {
  // mountinfo: "id parent maj:min root mount-point options [tags] - fstype source superopts"
  Mount v1, v2;
  bool have_v1 = false, have_v2 = false;
  std::istringstream lines(mountinfo);
  for (std::string line; std::getline(lines, line);) {
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream head(line.substr(0, dash)), tail(line.substr(dash + 3));
    std::string id, parent, dev, mroot, point, fstype, source, superopts;
    if (!(head >> id >> parent >> dev >> mroot >> point) || !(tail >> fstype >> source)) continue;
    tail >> superopts;
    if (fstype == "cgroup2" && !have_v2) {
      v2 = {mroot, point};
      have_v2 = true;
    } else if (fstype == "cgroup" && !have_v1) {
      for (const std::string& o : split(superopts, ',')) {
        if (o == "cpu") {
          v1 = {mroot, point};
          have_v1 = true;
        }
      }
    }
  }
  double best = 0;
  auto take = [&](double q) {
    if (q > 0 && (best == 0 || q < best)) best = q;
  };
  std::istringstream cg(proc_cgroup);
  for (std::string line; std::getline(cg, line);) {
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string id = line.substr(0, a), controllers = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (id == "0" && controllers.empty()) {
      if (have_v2) take(tightest(root, v2, path, true));
    } else if (have_v1) {
      for (const std::string& c : split(controllers, ',')) {
        if (c == "cpu") take(tightest(root, v1, path, false));
      }
    }
  }
  return best;
}

int CpuLimits::usable() const {
  int n = std::max(1, physical_cores);
  if (cgroup_cpus > 0) n = std::min(n, std::max(1, static_cast<int>(std::ceil(cgroup_cpus))));
  return n;
}

CpuLimits cpu_limits() {
  CpuLimits l;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) {
    l.affinity = l.physical_cores = std::max(1u, std::thread::hardware_concurrency());
  } else {
    std::set<std::pair<std::string, std::string>> cores;
    int logical = 0;
    bool topology = true;
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (!CPU_ISSET(c, &set)) continue;
      ++logical;
      const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(c) + "/topology/";
      std::istringstream pkg(read_file(dir + "physical_package_id")),
          core(read_file(dir + "core_id"));
      std::string p, k;
      if (!(pkg >> p) || !(core >> k)) topology = false;
      cores.emplace(p, k);
    }
    l.affinity = std::max(1, logical);
    l.physical_cores = topology ? std::max<int>(1, static_cast<int>(cores.size())) : l.affinity;
  }
  l.cgroup_cpus =
      cgroup_cpu_limit(read_file("/proc/self/cgroup"), read_file("/proc/self/mountinfo"), "");
  return l;
}

}  // namespace gemma_native::ops::cpu
