"""Sample the routing dev candidates (seed 20). Strata = topics.bucket x attachment. Writes candidates_routing.jsonl
(quota rows first, then reserve rows flagged reserve=True) for hand labelling."""
import json, random, re, sys
sys.path.insert(0, '/work/research/labels')
from topics import bucket
SEED = 20
Q3 = dict(lift=10, decoration=9, water_power=12, owners_committee=12, safety=14, noise=13, parking=12,
          fees=13, repairs=11, developer=10, property_mgmt=8, other=1)
Q4 = dict(lift=8, decoration=5, water_power=8, owners_committee=3, safety=10, noise=8, parking=9,
          fees=6, repairs=3, developer=10, property_mgmt=4, other=1)
END = '。！？!?'
def cut(s, n):
    if len(s) <= n: return s
    head = s[:n]
    i = max(head.rfind(c) for c in END)
    if i >= n // 3: return head[:i+1]
    i = max(head.rfind(c) for c in '；;，,')
    return head[:i+1] if i > 0 else head
R = [json.loads(l) for l in open('/work/research/taidi/property_even.jsonl', encoding='utf-8')]
assert all(r['id'] % 2 == 0 for r in R)
T = [r for r in R if r['property_in_title'] and r['attachment'] in ('附件3', '附件4')]
seen = set(); U = []
for r in sorted(T, key=lambda r: (r['attachment'], r['id'])):
    key = (r['title'].strip(), r['text'].strip())
    if key in seen: continue
    seen.add(key); U.append(r)
rng = random.Random(SEED)
out = []
for att, Q in (('附件3', Q3), ('附件4', Q4)):
    for b, q in Q.items():
        pool = [r for r in U if r['attachment'] == att and bucket(r) == b]
        rng.shuffle(pool)
        for k, r in enumerate(pool[:q + 8]):
            out.append(dict(id=r['id'], attachment=att, stratum=b, reserve=k >= q, title=r['title'],
                            text=cut(r['title'].strip() + '。' + r['text'].strip(), 600), source=r['source']))
with open('/work/research/labels/candidates_routing.jsonl', 'w', encoding='utf-8') as fh:
    for o in out: fh.write(json.dumps(o, ensure_ascii=False) + '\n')
print(len(out), sum(not o['reserve'] for o in out))
