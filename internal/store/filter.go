package store

import "strings"

// filter gathers a query's WHERE conditions and their arguments, in order.
type filter struct {
	conds []string
	args  []any
}

func (f *filter) add(cond string, a ...any) {
	f.conds = append(f.conds, cond)
	f.args = append(f.args, a...)
}

// equal adds "col = v" unless v is empty (empty means "any").
func (f *filter) equal(col, v string) {
	if v != "" {
		f.add(col+" = ?", v)
	}
}

// where is the WHERE clause ("" without conditions), with a leading space.
func (f *filter) where() string {
	if len(f.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(f.conds, " AND ")
}
