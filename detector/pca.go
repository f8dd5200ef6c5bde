package detector

import (
	"math"
	"sort"
)

// The pca component scores a window by how badly the principal subspace
// of normal windows explains it: the squared residual (SPE, the Q
// statistic) of its standardized log-count vector once projected on the
// principal components of the training windows. Normal windows of one
// workload move together (a request makes its reads, writes and polls in
// proportion); an attack that runs another code path breaks these
// proportions even when no single count is unusual.

// pcaStats is the principal subspace of the standardized log counts.
type pcaStats struct {
	Mean []float64   `json:"mean"` // per token id, log1p(count)
	SD   []float64   `json:"sd"`   // per token id, floored
	Comp [][]float64 `json:"comp"` // principal directions (unit vectors over token ids)
	Var  float64     `json:"var"`  // variance explained (fraction)
}

// pcaVarExplained is the fraction of the variance the principal subspace
// keeps; pcaFloor floors the standard deviations (as the count component).
const (
	pcaVarExplained = 0.9
	pcaFloor        = 0.25
	pcaMaxDims      = 256 // vocabularies above this keep their most frequent syscalls
)

func (m *Model) fitPCA(units []Unit, frac float64) *pcaStats {
	if frac <= 0 {
		frac = pcaVarExplained
	}
	v := len(m.Vocab)
	if v == 0 || len(units) < 2 {
		return nil
	}
	n := float64(len(units))
	ps := &pcaStats{Mean: make([]float64, v), SD: make([]float64, v)}
	xs := make([][]float64, len(units))
	sq := make([]float64, v)
	for ui := range units {
		x := make([]float64, v)
		for name, c := range units[ui].counts() {
			if i, ok := m.index[name]; ok && c > 0 {
				x[i] = math.Log1p(c)
			}
		}
		for i, y := range x {
			ps.Mean[i] += y
			sq[i] += y * y
		}
		xs[ui] = x
	}
	for i := range ps.Mean {
		ps.Mean[i] /= n
		ps.SD[i] = math.Max(math.Sqrt(math.Max(sq[i]/n-ps.Mean[i]*ps.Mean[i], 0)), pcaFloor)
	}
	// the dimensions that vary (at most pcaMaxDims, the most variable)
	var dims []int
	for i := 0; i < v; i++ {
		if sq[i]/n-ps.Mean[i]*ps.Mean[i] > 1e-12 {
			dims = append(dims, i)
		}
	}
	if len(dims) > pcaMaxDims {
		sort.SliceStable(dims, func(a, b int) bool { return sq[dims[a]] > sq[dims[b]] })
		dims = dims[:pcaMaxDims]
		sort.Ints(dims)
	}
	d := len(dims)
	if d == 0 {
		return ps
	}
	cov := make([][]float64, d)
	for a := range cov {
		cov[a] = make([]float64, d)
	}
	z := make([]float64, d)
	for _, x := range xs {
		for a, i := range dims {
			z[a] = (x[i] - ps.Mean[i]) / ps.SD[i]
		}
		for a := 0; a < d; a++ {
			for b := a; b < d; b++ {
				cov[a][b] += z[a] * z[b]
			}
		}
	}
	for a := 0; a < d; a++ {
		for b := a; b < d; b++ {
			cov[a][b] /= n
			cov[b][a] = cov[a][b]
		}
	}
	vals, vecs := jacobiEigen(cov)
	order := make([]int, d)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return vals[order[a]] > vals[order[b]] })
	total := 0.0
	for _, l := range vals {
		total += math.Max(l, 0)
	}
	acc := 0.0
	for _, k := range order {
		if total <= 0 || acc/total >= frac {
			break
		}
		acc += math.Max(vals[k], 0)
		dir := make([]float64, v)
		for a, i := range dims {
			dir[i] = vecs[a][k]
		}
		ps.Comp = append(ps.Comp, dir)
	}
	if total > 0 {
		ps.Var = acc / total
	}
	return ps
}

// pcaScoreOf is the window's residual outside the principal subspace: the
// square root of the SPE.
func (m *Model) pcaScoreOf(cv *countVec) float64 {
	ps := m.PCA
	if ps == nil {
		return 0
	}
	v := len(m.Vocab)
	z := make([]float64, v)
	for i := range z {
		z[i] = -ps.Mean[i] / ps.SD[i]
	}
	for i, c := range cv.known {
		if c > 0 {
			z[i] = (math.Log1p(c) - ps.Mean[i]) / ps.SD[i]
		}
	}
	spe := 0.0
	for _, x := range z {
		spe += x * x
	}
	for _, dir := range ps.Comp {
		p := 0.0
		for i, w := range dir {
			p += w * z[i]
		}
		spe -= p * p
	}
	return math.Sqrt(math.Max(spe, 0))
}

// jacobiEigen diagonalizes a symmetric matrix (cyclic Jacobi rotations):
// eigenvalues, and eigenvectors as the columns of the second result. a is
// overwritten.
func jacobiEigen(a [][]float64) ([]float64, [][]float64) {
	n := len(a)
	v := make([][]float64, n)
	for i := range v {
		v[i] = make([]float64, n)
		v[i][i] = 1
	}
	for sweep := 0; sweep < 50; sweep++ {
		off := 0.0
		for p := 0; p < n; p++ {
			for q := p + 1; q < n; q++ {
				off += a[p][q] * a[p][q]
			}
		}
		if off < 1e-18 {
			break
		}
		for p := 0; p < n; p++ {
			for q := p + 1; q < n; q++ {
				if math.Abs(a[p][q]) < 1e-15 {
					continue
				}
				theta := (a[q][q] - a[p][p]) / (2 * a[p][q])
				t := 1 / (math.Abs(theta) + math.Sqrt(theta*theta+1))
				if theta < 0 {
					t = -t
				}
				c := 1 / math.Sqrt(t*t+1)
				s := t * c
				for k := 0; k < n; k++ {
					akp, akq := a[k][p], a[k][q]
					a[k][p] = c*akp - s*akq
					a[k][q] = s*akp + c*akq
				}
				for k := 0; k < n; k++ {
					apk, aqk := a[p][k], a[q][k]
					a[p][k] = c*apk - s*aqk
					a[q][k] = s*apk + c*aqk
				}
				for k := 0; k < n; k++ {
					vkp, vkq := v[k][p], v[k][q]
					v[k][p] = c*vkp - s*vkq
					v[k][q] = s*vkp + c*vkq
				}
			}
		}
	}
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = a[i][i]
	}
	return vals, v
}
