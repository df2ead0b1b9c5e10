"""Write sentiment_real_dev.jsonl from candidates_sentiment.jsonl and the hand labels in sentiment_labels.py.
Quota rows labelled SKIP are replaced by labelled reserve rows of the same stratum (in sampled order)."""
import json, sys, collections
sys.path.insert(0, '/work/research/labels')
from sentiment_labels import L
C = [json.loads(l) for l in open('/work/research/labels/candidates_sentiment.jsonl', encoding='utf-8')]
out = [c for c in C if c['id'] in L and L[c['id']][0] != 'SKIP']
assert len({c['id'] for c in out}) == len(out)
routing = {json.loads(l)['id'] for l in open('/work/research/labels/routing_real_dev.jsonl', encoding='utf-8')}
assert not routing & {c['id'] for c in out}
with open('/work/research/labels/sentiment_real_dev.jsonl', 'w', encoding='utf-8') as fh:
    for c in out:
        lab, note = L[c['id']]
        fh.write(json.dumps(dict(text=c['text'], label=lab, kind=c['kind'], id=c['id'], source=c['source'], note=note),
                            ensure_ascii=False) + '\n')
print(len(out), collections.Counter(c['kind'] for c in out))
for k in ('letter', 'reply'):
    print(k, collections.Counter(L[c['id']][0] for c in out if c['kind'] == k))
print('letters by stratum', collections.Counter((c['stratum'], L[c['id']][0]) for c in out if c['kind'] == 'letter'))
print('total', collections.Counter(L[c['id']][0] for c in out))
print('max len', max(len(c['text']) for c in out), 'min', min(len(c['text']) for c in out))
