// The compiled paths of icm_depth_ros.instances.statistics (that module documents what they compute; this file only
// computes it). Plain CPython API and the buffer protocol: no NumPy headers, so any NumPy the node runs with works.
//
//   statistics(depth, labels, firmness, width, min_pixels, near_percent) -> bytes | None
//
// depth:      C-contiguous float32 [H*W], NaN (or inf) = no estimate
// labels:     C-contiguous integers or bools [H*W]; 0 = background
// firmness:   C-contiguous float32 [H*W], or None (counts as 1)
// width:      W, to turn a flat index into (u, v)
// min_pixels: instances with fewer pixels are left out
// returns     n x FIELDS float64 (see Field), one row per kept instance, ascending label; empty when no pixel
//             is labelled; None when a label is negative or >= 4 x the pixel count (too sparse for the
//             kernel's table: the caller compacts the ids to 1..n and calls again)
//
// One pass over the image, run by run (a run: consecutive pixels of one label in a row), accumulates each
// instance's sums and box and copies its finite depths, as order-preserving integer keys, into one buffer;
// then a radix select over each instance's runs (order_statistics) finds its median and near depth.
//
//   regions(assignment, width, min_pixels, max_regions, out) -> int | None
//
// assignment: C-contiguous integers [H*W] >= 0, each cell's cluster
// out:        C-contiguous writable int32 [H*W]: region ids 1, 2, ... (largest first, ties as assignment_regions
//             documents), 0 where a region was dropped (under min_pixels, or past max_regions when that is > 0)
// returns     the number of regions kept; None when a cluster is >= 4 x the cell count (the caller compacts)
//
// A union-find pass links each cell to an earlier 8-neighbour of its cluster, a second pass numbers the
// components in raster order and measures them, a sort orders them and a third pass writes the ids.
// The interpreter lock is released while either runs.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "image_loop.h"  // ICM_IMAGE_LOOP: the image loops also for AVX2 on x86-64

namespace {

enum Field {
  kLabel, kCount, kValidCount, kU0, kV0, kU1, kV1, kSumZ, kSumUZ, kSumVZ, kSumFirmness, kMedian, kNear, kFields
};

struct Accumulator {
  int64_t label = 0, count = 0, valid = 0;
  int64_t u0 = std::numeric_limits<int64_t>::max(), v0 = std::numeric_limits<int64_t>::max(), u1 = -1, v1 = -1;
  double sum_z = 0.0, sum_uz = 0.0, sum_vz = 0.0, sum_firmness = 0.0;
  int64_t first_run = -1, last_run = -1;  // the instance's runs, a chain through Run::next
};

// A run: consecutive pixels of one label in one row. Its finite depths, as keys, are keys[start, start + size).
struct Run {
  int64_t start, size, next;
};

// np.percentile's default (linear) method on an ascending view, numpy's lerp with its rounding, given the
// two order statistics around the virtual index.
double lerp(double a, double b, double t) {
  const double difference = b - a;
  return t >= 0.5 ? b - difference * (1.0 - t) : a + difference * t;
}

// Finite floats as unsigned keys in the same order (negative ones flipped), and back.
inline uint32_t float_key(uint32_t bits) { return bits & 0x80000000u ? ~bits : bits | 0x80000000u; }
inline float key_float(uint32_t key) {
  const uint32_t bits = key & 0x80000000u ? key & 0x7fffffffu : ~key;
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// One instance's keys: the stretches of its runs, in raster order.
class InstanceKeys {
 public:
  InstanceKeys(const uint32_t* keys, const std::vector<Run>& runs, int64_t first) : keys_(keys), runs_(runs), first_(first) {}
  template <typename Function>
  void each_stretch(Function function) const {  // function(const uint32_t* begin, int64_t size)
    for (int64_t r = first_; r >= 0; r = runs_[r].next) function(keys_ + runs_[r].start, runs_[r].size);
  }

 private:
  const uint32_t* keys_;
  const std::vector<Run>& runs_;
  int64_t first_;
};

struct Scratch {
  std::vector<uint32_t> histogram, candidates;
  std::vector<uint8_t> wanted;
};

// The values at the ascending ranks `ranks` (each < n) of an instance's n keys: a radix select. One
// histogram of the keys over [min, max] in at most n / 8 buckets (4096 at most); then only the keys in the
// buckets that hold a wanted rank are copied out and sorted: three reads of every key, none moved.
ICM_IMAGE_LOOP void order_statistics(const InstanceKeys& keys, int64_t n, const int64_t* ranks, int count, double* out,
                      Scratch* scratch) {
  uint32_t low = 0xffffffffu, high = 0;
  keys.each_stretch([&](const uint32_t* k, int64_t size) {
    for (int64_t i = 0; i < size; ++i) {
      low = std::min(low, k[i]);
      high = std::max(high, k[i]);
    }
  });
  const uint32_t most = static_cast<uint32_t>(std::clamp<int64_t>(n / 8, 16, 4096));
  int shift = 0;
  while (((high - low) >> shift) >= most) ++shift;
  const size_t buckets = static_cast<size_t>((high - low) >> shift) + 1;
  scratch->histogram.assign(2 * buckets, 0);  // two interleaved histograms: no chain of increments of one counter
  uint32_t* h = scratch->histogram.data();
  keys.each_stretch([&](const uint32_t* k, int64_t size) {
    int64_t i = 0;
    for (; i + 2 <= size; i += 2) {
      ++h[((k[i] - low) >> shift) * 2];
      ++h[((k[i + 1] - low) >> shift) * 2 + 1];
    }
    if (i < size) ++h[((k[i] - low) >> shift) * 2];
  });
  // Each wanted rank's bucket and the rank of that bucket's first key.
  uint32_t bucket_of[4];
  int64_t first_rank[4];
  for (int r = 0; r < count; ++r) {
    int64_t seen = 0;
    size_t b = 0;
    while (seen + h[2 * b] + h[2 * b + 1] <= ranks[r]) seen += h[2 * b] + h[2 * b + 1], ++b;
    bucket_of[r] = static_cast<uint32_t>(b);
    first_rank[r] = seen;
  }
  // The keys of the wanted buckets (usually a few hundred), sorted: bucket order is key order. Every key is
  // written and only a wanted one kept (the count advances): no branch to mispredict per key.
  scratch->wanted.assign(buckets, 0);
  for (int r = 0; r < count; ++r) scratch->wanted[bucket_of[r]] = 1;
  const uint8_t* wanted = scratch->wanted.data();
  if (scratch->candidates.size() < static_cast<size_t>(n)) scratch->candidates.resize(static_cast<size_t>(n));
  uint32_t* candidates = scratch->candidates.data();
  int64_t kept = 0;
  keys.each_stretch([&](const uint32_t* k, int64_t size) {
    for (int64_t i = 0; i < size; ++i) {
      candidates[kept] = k[i];
      kept += wanted[(k[i] - low) >> shift];
    }
  });
  std::sort(candidates, candidates + kept);
  for (int r = 0; r < count; ++r) {  // before the bucket among the candidates: the lower wanted buckets' keys
    const uint32_t from = low + (bucket_of[r] << shift);
    const int64_t below = std::lower_bound(candidates, candidates + kept, from) - candidates;
    out[r] = key_float(candidates[below + (ranks[r] - first_rank[r])]);
  }
}

// One of four interleaved partial sums of a run.
struct Lane {
  double z = 0.0, uz = 0.0, firmness = 0.0;
};

// One pixel of a run: its depth into the lane's sums and, when finite, its key into the run's stretch.
inline void add_pixel(const float* z, const float* firmness, int64_t k, Lane* lane, uint32_t* out, int64_t* written) {
  uint32_t bits;
  std::memcpy(&bits, z + k, sizeof bits);
  const bool finite = (bits & 0x7f800000u) != 0x7f800000u;
  const double value = finite ? static_cast<double>(z[k]) : 0.0;
  lane->z += value;
  lane->uz += static_cast<double>(k) * value;
  if (firmness) lane->firmness += firmness[k];
  out[*written] = float_key(bits);
  *written += finite;
}

template <typename Label>
ICM_IMAGE_LOOP bool accumulate(const float* depth, const Label* labels, const float* firmness, int64_t pixels, int64_t width,
                int64_t min_pixels, double near_percent, std::vector<double>* rows) {
  Label low = labels[0], high = labels[0];
  for (int64_t i = 1; i < pixels; ++i) {
    low = std::min(low, labels[i]);
    high = std::max(high, labels[i]);
  }
  if constexpr (std::is_signed_v<Label>) {
    if (low < 0) return false;
  }
  if (static_cast<uint64_t>(high) >= 4 * static_cast<uint64_t>(pixels)) return false;

  // One pass over the image, run by run: sums and boxes per instance, finite depths as keys in raster order.
  std::vector<int64_t> slot(static_cast<size_t>(high) + 1, 0);  // label -> index in acc + 1 (first seen first)
  std::vector<Accumulator> acc;
  std::vector<Run> runs;
  std::unique_ptr<uint32_t[]> keys(new uint32_t[static_cast<size_t>(pixels)]);  // not zeroed: written before read
  int64_t written_total = 0;
  for (int64_t row = 0, i = 0; i < pixels; ++row) {
    const int64_t row_start = i, row_end = i + width;
    while (i < row_end) {
      const Label label = labels[i];
      int64_t end = i + 1;
      while (end < row_end && labels[end] == label) ++end;
      if (label == 0) {
        i = end;
        continue;
      }
      int64_t& index = slot[static_cast<size_t>(label)];
      if (index == 0) {
        acc.emplace_back();
        acc.back().label = static_cast<int64_t>(label);
        index = static_cast<int64_t>(acc.size());
      }
      Accumulator& a = acc[static_cast<size_t>(index - 1)];
      const int64_t length = end - i;
      Lane lanes[4];  // four lanes of double sums: independent additions instead of one chain per pixel
      uint32_t* out = keys.get() + written_total;
      int64_t written = 0, k = 0;
      const float* z = depth + i;
      const float* firm = firmness ? firmness + i : nullptr;
      for (; k + 4 <= length; k += 4) {
        add_pixel(z, firm, k, &lanes[0], out, &written);
        add_pixel(z, firm, k + 1, &lanes[1], out, &written);
        add_pixel(z, firm, k + 2, &lanes[2], out, &written);
        add_pixel(z, firm, k + 3, &lanes[3], out, &written);
      }
      for (; k < length; ++k) add_pixel(z, firm, k, &lanes[0], out, &written);
      const double run_z = (lanes[0].z + lanes[1].z) + (lanes[2].z + lanes[3].z);
      const double run_uz = (lanes[0].uz + lanes[1].uz) + (lanes[2].uz + lanes[3].uz);
      const int64_t u_start = i - row_start;
      a.count += length;
      a.u0 = std::min(a.u0, u_start);
      a.u1 = std::max(a.u1, u_start + length);
      a.v0 = std::min(a.v0, row);
      a.v1 = row + 1;
      a.sum_z += run_z;
      a.sum_uz += run_uz + static_cast<double>(u_start) * run_z;
      a.sum_vz += static_cast<double>(row) * run_z;
      a.sum_firmness += firm ? (lanes[0].firmness + lanes[1].firmness) + (lanes[2].firmness + lanes[3].firmness)
                             : static_cast<double>(length);
      a.valid += written;
      if (written > 0) {
        const int64_t run = static_cast<int64_t>(runs.size());
        runs.push_back(Run{written_total, written, -1});
        (a.last_run >= 0 ? runs[static_cast<size_t>(a.last_run)].next : a.first_run) = run;
        a.last_run = run;
        written_total += written;
      }
      i = end;
    }
  }

  // Then per instance, by ascending label: the order statistics and one output row.
  std::vector<size_t> order(acc.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return acc[x].label < acc[y].label; });
  const int64_t keep_from = std::max<int64_t>(min_pixels, 1);
  Scratch scratch;
  for (const size_t k : order) {
    const Accumulator& a = acc[k];
    if (a.count < keep_from) continue;
    double median = std::nan(""), near = std::nan("");
    if (a.valid > 0) {
      const double last = static_cast<double>(a.valid - 1);
      const double median_position = 0.5 * last, near_position = near_percent / 100.0 * last;
      const int64_t median_low = static_cast<int64_t>(std::floor(median_position));
      const int64_t near_low = static_cast<int64_t>(std::floor(near_position));
      const int64_t ranks[4] = {median_low, std::min(median_low + 1, a.valid - 1), near_low,
                                std::min(near_low + 1, a.valid - 1)};
      double at[4];
      order_statistics(InstanceKeys(keys.get(), runs, a.first_run), a.valid, ranks, 4, at, &scratch);
      median = lerp(at[0], at[1], median_position - static_cast<double>(median_low));
      near = lerp(at[2], at[3], near_position - static_cast<double>(near_low));
    }
    const double row[kFields] = {
        static_cast<double>(a.label), static_cast<double>(a.count), static_cast<double>(a.valid),
        static_cast<double>(a.u0), static_cast<double>(a.v0), static_cast<double>(a.u1), static_cast<double>(a.v1),
        a.sum_z, a.sum_uz, a.sum_vz, a.sum_firmness, median, near};
    rows->insert(rows->end(), row, row + kFields);
  }
  return true;
}

// ---- regions: 8-connected components of one cluster over a cluster assignment ----------------------------------

// One component of the assignment while it is measured. Its first cell in raster order is in row `row`; the
// column of that cell and the leftmost column it has in the next row (or none) decide its first 2x2 block.
struct Component {
  int64_t area = 0, cluster = 0, row = 0, first_column = 0;
  int64_t next_row_column = std::numeric_limits<int64_t>::max();
  int64_t block_row = 0, block_column = 0;  // its first 2x2 block, counted from its cluster's bounding box
};

// The root of a cell's tree, compressing the path. Every link points to an earlier cell, so the root is the
// tree's first cell in raster order.
inline int32_t find_root(int32_t* parent, int32_t cell) {
  int32_t root = cell;
  while (parent[root] != root) root = parent[root];
  while (parent[cell] != root) {
    const int32_t next = parent[cell];
    parent[cell] = root;
    cell = next;
  }
  return root;
}

// Cell i of the current row joins a (and b, when >= 0): both earlier cells of its cluster.
inline void join(int32_t* parent, int32_t i, int32_t a, int32_t b) {
  if (b >= 0) {
    const int32_t root_a = find_root(parent, a), root_b = find_root(parent, b);
    if (root_a < root_b) parent[root_b] = root_a; else parent[root_a] = root_b;
  }
  parent[i] = a;
}

// Regions of a cluster assignment [pixels / width, width] into `out`; the number kept, or -1 when a cluster is
// negative or too large for the table of bounding boxes (>= 4 x pixels). `out` first holds each cell's component,
// then its region.
template <typename Cluster>
int64_t label_regions(const Cluster* assignment, int64_t pixels, int64_t width, int64_t min_pixels,
                      int64_t max_regions, int32_t* out) {
  Cluster low = assignment[0], high = assignment[0];
  for (int64_t i = 1; i < pixels; ++i) {
    low = std::min(low, assignment[i]);
    high = std::max(high, assignment[i]);
  }
  if constexpr (std::is_signed_v<Cluster>) {
    if (low < 0) return -1;
  }
  if (static_cast<uint64_t>(high) >= 4 * static_cast<uint64_t>(pixels)) return -1;
  const int64_t height = pixels / width;

  // Union-find: each cell links to an earlier 8-neighbour of its cluster. The cell above touches the other
  // three (left, above-left, above-right), so when it matches they are already joined to it; else left and
  // above-left touch each other, and only above-right can bring a second tree to join.
  std::unique_ptr<int32_t[]> parent(new int32_t[static_cast<size_t>(pixels)]);
  int32_t* p = parent.get();
  for (int64_t row = 0; row < height; ++row) {
    const Cluster* line = assignment + row * width;
    const Cluster* above = row > 0 ? line - width : nullptr;
    for (int64_t column = 0; column < width; ++column) {
      const int32_t i = static_cast<int32_t>(row * width + column), up = static_cast<int32_t>(i - width);
      const Cluster cluster = line[column];
      if (above && above[column] == cluster) {
        p[i] = up;
        continue;
      }
      int32_t a = -1, b = -1;
      if (column > 0 && line[column - 1] == cluster) a = i - 1;
      else if (above && column > 0 && above[column - 1] == cluster) a = up - 1;
      if (above && column + 1 < width && above[column + 1] == cluster) b = up + 1;
      if (a < 0) std::swap(a, b);
      if (a < 0) p[i] = i; else join(p, i, a, b);
    }
  }

  // Components numbered in raster order of their first cell (a link's target is already numbered), measured,
  // and the top-left corner of every cluster's bounding box.
  std::vector<Component> components;
  const size_t clusters = static_cast<size_t>(high) + 1;
  std::vector<int64_t> box_row(clusters, std::numeric_limits<int64_t>::max());
  std::vector<int64_t> box_column(clusters, std::numeric_limits<int64_t>::max());
  for (int64_t row = 0; row < height; ++row) {
    for (int64_t column = 0; column < width; ++column) {
      const int64_t i = row * width + column;
      const int64_t cluster = static_cast<int64_t>(assignment[i]);
      int32_t component;
      if (p[i] == i) {
        component = static_cast<int32_t>(components.size());
        components.emplace_back();
        Component& c = components.back();
        c.cluster = cluster, c.row = row, c.first_column = column;
        box_row[static_cast<size_t>(cluster)] = std::min(box_row[static_cast<size_t>(cluster)], row);
      } else {
        component = out[p[i]];  // an earlier cell of the same component
      }
      out[i] = component;
      Component& c = components[static_cast<size_t>(component)];
      ++c.area;
      if (row == c.row + 1) c.next_row_column = std::min(c.next_row_column, column);
      box_column[static_cast<size_t>(cluster)] = std::min(box_column[static_cast<size_t>(cluster)], column);
    }
  }
  // OpenCV labels a cluster's bounding box block by block (2x2 cells, raster order): a component's first block
  // is in its first row's block row; its leftmost cell there is in its first row, or also in the next row when
  // both rows fall in that block row.
  std::vector<int32_t> order;
  for (size_t k = 0; k < components.size(); ++k) {
    Component& c = components[k];
    if (c.area < min_pixels) continue;
    const int64_t row_offset = c.row - box_row[static_cast<size_t>(c.cluster)];
    const int64_t left = row_offset % 2 == 0 ? std::min(c.first_column, c.next_row_column) : c.first_column;
    c.block_row = row_offset / 2;
    c.block_column = (left - box_column[static_cast<size_t>(c.cluster)]) / 2;
    order.push_back(static_cast<int32_t>(k));
  }
  // Largest first, then lower cluster, then first block: two components of one cluster never share a block
  // (a block's cells all touch), so this is a total order.
  const auto before = [&](int32_t x, int32_t y) {
    const Component &a = components[static_cast<size_t>(x)], &b = components[static_cast<size_t>(y)];
    if (a.area != b.area) return a.area > b.area;
    if (a.cluster != b.cluster) return a.cluster < b.cluster;
    if (a.block_row != b.block_row) return a.block_row < b.block_row;
    return a.block_column < b.block_column;
  };
  const size_t kept = max_regions > 0 ? std::min(order.size(), static_cast<size_t>(max_regions)) : order.size();
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(kept), order.end(), before);
  std::vector<int32_t> region(components.size(), 0);
  for (size_t k = 0; k < kept; ++k) region[static_cast<size_t>(order[k])] = static_cast<int32_t>(k + 1);
  for (int64_t i = 0; i < pixels; ++i) out[i] = region[static_cast<size_t>(out[i])];
  return static_cast<int64_t>(kept);
}

// The buffer's integer type by its struct format character, e.g. "H" (uint16) or "<i" (int32).
template <typename Function>
bool with_label_type(const Py_buffer& view, Function function) {
  const char* format = view.format ? view.format : "B";
  while (*format == '<' || *format == '=' || *format == '@' || *format == '>' || *format == '!') ++format;
  if (format[0] == '\0' || format[1] != '\0') return false;
  const void* data = view.buf;
  switch (format[0]) {
    case '?': case 'B': function(static_cast<const uint8_t*>(data)); return true;
    case 'b': function(static_cast<const int8_t*>(data)); return true;
    case 'H': function(static_cast<const uint16_t*>(data)); return true;
    case 'h': function(static_cast<const int16_t*>(data)); return true;
    case 'I': function(static_cast<const uint32_t*>(data)); return view.itemsize == 4;
    case 'i': function(static_cast<const int32_t*>(data)); return view.itemsize == 4;
    case 'L': case 'Q': if (view.itemsize != 8) return false; function(static_cast<const uint64_t*>(data)); return true;
    case 'l': case 'q': if (view.itemsize != 8) return false; function(static_cast<const int64_t*>(data)); return true;
    default: return false;
  }
}

// Whether the buffer holds 4-byte items of struct format `type` ('f': float32, 'i': int32) in native order.
bool is_4_byte(const Py_buffer& view, char type) {
  if (view.itemsize != 4 || view.format == nullptr) return false;
  const char* format = view.format[0] == '<' || view.format[0] == '=' ? view.format + 1 : view.format;
  return format[0] == type && format[1] == '\0';
}

PyObject* statistics(PyObject*, PyObject* args) {
  PyObject *depth_object = nullptr, *labels_object = nullptr, *firmness_object = nullptr;
  Py_ssize_t width = 0, min_pixels = 0;
  double near_percent = 0.0;
  if (!PyArg_ParseTuple(args, "OOOnnd", &depth_object, &labels_object, &firmness_object, &width, &min_pixels,
                        &near_percent)) {
    return nullptr;
  }
  const bool has_firmness = firmness_object != Py_None;
  const int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT;  // refused (BufferError) where not C-contiguous
  Py_buffer depth{}, labels{}, firmness{};
  PyObject* result = nullptr;
  do {
    if (PyObject_GetBuffer(depth_object, &depth, flags) != 0) break;
    if (PyObject_GetBuffer(labels_object, &labels, flags) != 0) break;
    if (has_firmness && PyObject_GetBuffer(firmness_object, &firmness, flags) != 0) break;
    if (!is_4_byte(depth, 'f') || (has_firmness && !is_4_byte(firmness, 'f'))) {
      PyErr_SetString(PyExc_TypeError, "depth and firmness must be float32");
      break;
    }
    const Py_ssize_t pixels = depth.len / 4;
    if (labels.itemsize <= 0 || labels.len / labels.itemsize != pixels || (has_firmness && firmness.len / 4 != pixels)) {
      PyErr_SetString(PyExc_ValueError, "depth, labels and firmness must have the same number of pixels");
      break;
    }
    if (width <= 0 || pixels % width != 0) {
      PyErr_Format(PyExc_ValueError, "width %zd does not divide %zd pixels", width, pixels);
      break;
    }
    std::vector<double> rows;
    const float* z = static_cast<const float*>(depth.buf);
    const float* firm = has_firmness ? static_cast<const float*>(firmness.buf) : nullptr;
    bool dense = true;
    bool known_type = true;
    Py_BEGIN_ALLOW_THREADS
    known_type = pixels == 0 || with_label_type(labels, [&](auto* typed) {
      dense = accumulate(z, typed, firm, pixels, width, min_pixels, near_percent, &rows);
    });
    Py_END_ALLOW_THREADS
    if (!known_type) {
      PyErr_Format(PyExc_TypeError, "labels of struct format '%s' are not supported (need integers or bools)",
                   labels.format ? labels.format : "B");
      break;
    }
    if (!dense) {
      Py_INCREF(Py_None);
      result = Py_None;
      break;
    }
    result = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(rows.data()),
                                       static_cast<Py_ssize_t>(rows.size() * sizeof(double)));
  } while (false);
  for (Py_buffer* view : {&depth, &labels, &firmness}) {
    if (view->obj != nullptr) PyBuffer_Release(view);
  }
  return result;
}

PyObject* regions(PyObject*, PyObject* args) {
  PyObject *assignment_object = nullptr, *out_object = nullptr;
  Py_ssize_t width = 0, min_pixels = 0, max_regions = 0;
  if (!PyArg_ParseTuple(args, "OnnnO", &assignment_object, &width, &min_pixels, &max_regions, &out_object)) {
    return nullptr;
  }
  Py_buffer assignment{}, out{};
  PyObject* result = nullptr;
  do {
    if (PyObject_GetBuffer(assignment_object, &assignment, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) break;
    if (PyObject_GetBuffer(out_object, &out, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) != 0) break;
    const Py_ssize_t cells = assignment.itemsize > 0 ? assignment.len / assignment.itemsize : 0;
    if (!is_4_byte(out, 'i') || out.len / 4 != cells) {
      PyErr_Format(PyExc_ValueError, "out must be int32 with the assignment's %zd cells", cells);
      break;
    }
    if (cells >= std::numeric_limits<int32_t>::max()) {
      PyErr_Format(PyExc_ValueError, "cluster assignment of %zd cells is too large (int32 cell indices)", cells);
      break;
    }
    if (width <= 0 || cells % width != 0) {
      PyErr_Format(PyExc_ValueError, "width %zd does not divide %zd cells", width, cells);
      break;
    }
    int64_t kept = 0;
    bool known_type = true;
    int32_t* ids = static_cast<int32_t*>(out.buf);
    Py_BEGIN_ALLOW_THREADS
    known_type = cells == 0 || with_label_type(assignment, [&](auto* typed) {
      kept = label_regions(typed, cells, width, min_pixels, max_regions, ids);
    });
    Py_END_ALLOW_THREADS
    if (!known_type) {
      PyErr_Format(PyExc_TypeError, "cluster assignment of struct format '%s' is not supported (need integers)",
                   assignment.format ? assignment.format : "B");
      break;
    }
    if (kept < 0) {
      Py_INCREF(Py_None);
      result = Py_None;
      break;
    }
    result = PyLong_FromLongLong(kept);
  } while (false);
  for (Py_buffer* view : {&assignment, &out}) {
    if (view->obj != nullptr) PyBuffer_Release(view);
  }
  return result;
}

PyMethodDef methods[] = {
    {"statistics", statistics, METH_VARARGS,
     "statistics(depth, labels, firmness, width, min_pixels, near_percent) -> bytes of n x FIELDS float64, or None"},
    {"regions", regions, METH_VARARGS,
     "regions(assignment, width, min_pixels, max_regions, out) -> regions kept (ids written to out), or None"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_instance_kernel", "Instance regions and per-instance depth statistics (compiled).", -1,
                      methods, nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__instance_kernel() {
  PyObject* m = PyModule_Create(&module);
  if (m != nullptr && PyModule_AddIntConstant(m, "FIELDS", kFields) != 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
