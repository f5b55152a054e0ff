package farm

import (
	"context"

	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/internal/parallel"
	"github.com/phonefarm/phonefarm/inventory"
	"github.com/phonefarm/phonefarm/transport"
)

// PhoneFacts is what reading one phone gave: its facts, or why they could
// not be read. Transport is set once the phone was reached.
type PhoneFacts struct {
	Phone     *inventory.Phone
	Transport *transport.Description
	Facts     *facts.Facts
	Err       error
}

// Facts connects to each phone, at most parallelism at once, and reads its
// facts. A phone that cannot be reached or read does not stop the others;
// the error joins every phone's failure.
func (f *Farm) Facts(ctx context.Context, phones []*inventory.Phone, parallelism int) ([]PhoneFacts, error) {
	res := make([]PhoneFacts, len(phones))
	for i, p := range phones {
		res[i].Phone = p
	}
	err := parallel.Each(ctx, len(phones), parallelism, func(ctx context.Context, i int) error {
		h, err := f.Connect(ctx, phones[i])
		if err != nil {
			res[i].Err = err
			return err
		}
		defer h.Close()
		d := h.Describe()
		res[i].Transport = &d
		fs, err := facts.Gather(ctx, h)
		if err != nil {
			res[i].Err = err
			return err
		}
		res[i].Facts = &fs
		return nil
	})
	for i := range res {
		if res[i].Facts == nil && res[i].Err == nil {
			res[i].Err = ctx.Err() // not started: the context ended first
		}
	}
	return res, err
}
