// How many CPUs this process may use: its affinity mask, the physical cores under it, and the
// CPU quota of its cgroup (v1 cpu.cfs_quota_us / cfs_period_us or v2 cpu.max, the tightest
// along the path to the hierarchy's root).  The thread pool's default size is derived from it.
#pragma once

#include <string>

namespace gemma_native::ops::cpu {

struct CpuLimits {
  int affinity = 1;        // logical CPUs in the affinity mask
  int physical_cores = 1;  // distinct physical cores among them
  double cgroup_cpus = 0;  // quota / period, 0 when there is no quota
  int usable() const;      // min(physical cores, ceil(cgroup quota)), at least 1
};

CpuLimits cpu_limits();

// The cgroup CPU quota in CPUs (0: none) from the text of /proc/self/cgroup and
// /proc/self/mountinfo, reading the controller files under `root` + their mount points (root
// is "" for the real system; tests point it at a fake tree).
double cgroup_cpu_limit(const std::string& proc_cgroup, const std::string& mountinfo,
                        const std::string& root);

}  // namespace gemma_native::ops::cpu
