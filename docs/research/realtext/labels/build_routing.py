"""Write routing_real_dev.jsonl from candidates_routing.jsonl and the hand labels in routing_labels.py.
Quota rows whose label is SKIP are replaced by the labelled reserve rows of the same stratum (in sampled order)."""
import json, sys, collections
sys.path.insert(0, '/work/research/labels')
from routing_labels import L
C = [json.loads(l) for l in open('/work/research/labels/candidates_routing.jsonl', encoding='utf-8')]
out = [c for c in C if c['id'] in L and L[c['id']][0] != 'SKIP']
assert len({c['id'] for c in out}) == len(out)
with open('/work/research/labels/routing_real_dev.jsonl', 'w', encoding='utf-8') as fh:
    for c in out:
        ok, note = L[c['id']]
        fh.write(json.dumps(dict(text=c['text'], ok=ok, id=c['id'], attachment=c['attachment'], source=c['source'],
                                 note=note), ensure_ascii=False) + '\n')
print(len(out), collections.Counter(c['attachment'] for c in out))
print('first label', collections.Counter(L[c['id']][0][0] for c in out))
print('label sets', collections.Counter(tuple(L[c['id']][0]) for c in out))
print('strata', collections.Counter(c['stratum'] for c in out))
print('max len', max(len(c['text']) for c in out))
