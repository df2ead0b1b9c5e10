"""Sample sentiment dev candidates (seed 20): 120 citizens' letters + 80 official replies (附件4 `reply`).
Letters: property_even rows whose id is not in routing_real_dev.jsonl, deduplicated by title+text, in three strata
(Q = question/suggestion titles, M = body contains praise/thanks wording, G = other property_in_title rows), plus two
thank-you letters found outside the property filter (ids 197442, 21552; even ids from even_messages.jsonl).
Replies: 附件4 property_even rows not used above and not in the routing set. Reserves (+10 per stratum) are written too."""
import json, random, re
SEED = 20
END = '。！？!?'
def cut(s, n):
    if len(s) <= n: return s
    head = s[:n]
    i = max(head.rfind(c) for c in END)
    if i >= n // 3: return head[:i+1]
    i = max(head.rfind(c) for c in '；;，,')
    return head[:i+1] if i > 0 else head
def clean(s):
    return re.sub(r'\s*_x000D_\s*', ' ', s).strip()
# frozen: the 200 routing ids as they stood when this sample was drawn (routing_real_dev.jsonl changed 4 lines later)
routing_ids = {int(x) for x in open('/work/research/labels/routing_ids_at_sentiment_sampling.txt') if x.strip()}
P = [json.loads(l) for l in open('/work/research/taidi/property_even.jsonl', encoding='utf-8')]
E = {r['id']: r for r in map(json.loads, open('/work/research/taidi/even_messages.jsonl', encoding='utf-8'))}
assert all(r['id'] % 2 == 0 for r in P) and all(i % 2 == 0 for i in E)
seen = set(); pool = []
for r in sorted(P, key=lambda r: (r['attachment'], r['id'])):
    k = (r['title'].strip(), r['text'].strip())
    if r['id'] in routing_ids or k in seen: continue
    seen.add(k); pool.append(r)
QRE = re.compile(r'咨询|请问|询问|建议|是否|如何|怎么|何时|能否|可否|求助')
MRE = re.compile(r'点赞|表扬|满意|感谢.{0,10}(及时|重视|解决|关心|支持)|辛苦了|值得|好政策|赞')
def stratum(r):
    if QRE.search(r['title']): return 'Q'
    if MRE.search(r['text']): return 'M'
    if r['property_in_title']: return 'G'
    return None
rng = random.Random(SEED)
quota = dict(Q=40, M=20, G=58)
letters = []
for s, q in quota.items():
    ps = [r for r in pool if stratum(r) == s]
    rng.shuffle(ps)
    for k, r in enumerate(ps[:q + 10]):
        letters.append(dict(kind='letter', stratum=s, reserve=k >= q, id=r['id'], attachment=r['attachment'],
                            source=r['source'], text=cut(clean(r['title']) + '。' + clean(r['text']), 400)))
for i in (197442, 21552):
    r = E[i]
    letters.append(dict(kind='letter', stratum='praise_outside_filter', reserve=False, id=i, attachment=r['attachment'],
                        source=r['source'], text=cut(clean(r['title']) + '。' + clean(r['text']), 400)))
used = {x['id'] for x in letters}
rp = [r for r in pool if r['attachment'] == '附件4' and r['id'] not in used and r.get('reply')]
rng.shuffle(rp)
replies = [dict(kind='reply', stratum='reply', reserve=k >= 80, id=r['id'], attachment='附件4', source=r['source'],
                text=cut(clean(r['reply']), 400)) for k, r in enumerate(rp[:90])]
with open('/work/research/labels/candidates_sentiment.jsonl', 'w', encoding='utf-8') as fh:
    for x in letters + replies: fh.write(json.dumps(x, ensure_ascii=False) + '\n')
print(len(letters), len(replies), sum(not x['reserve'] for x in letters + replies))
