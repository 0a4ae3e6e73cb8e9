// A stand-in for libnvidia-ml.so.1 with two devices whose energy counters
// advance by 1500 mJ (device 0) and 2500 mJ (device 1) at every read, so a
// meter that reads once to probe, once at start and once at stop measures
// exactly 4 J. Device 2 exists but does not support energy readings.
#include <cstdint>

namespace {
struct device_st {
  unsigned long long mj;
  unsigned long long step;
};
device_st devices[3] = {{1000000, 1500}, {2000000, 2500}, {0, 0}};
int initialised = 0;
}  // namespace

extern "C" {
int nvmlInit_v2() {
  ++initialised;
  return 0;
}
int nvmlShutdown() {
  --initialised;
  return 0;
}
int nvmlDeviceGetCount_v2(unsigned int* n) {
  *n = 3;
  return initialised > 0 ? 0 : 1;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, device_st** d) {
  if (i >= 3) return 2;  // NVML_ERROR_INVALID_ARGUMENT
  *d = &devices[i];
  return 0;
}
int nvmlDeviceGetTotalEnergyConsumption(device_st* d, unsigned long long* mj) {
  if (d == &devices[2]) return 3;  // NVML_ERROR_NOT_SUPPORTED
  d->mj += d->step;
  *mj = d->mj;
  return 0;
}
const char* nvmlErrorString(int rc) {
  return rc == 3 ? "Not Supported" : "Some NVML error";
}
int greenreduce_fake_nvml_live_inits() {
  return initialised;
}
}
