"""Select property-management / residential-community messages from even_messages.jsonl (even ids only)."""
import json, re, collections, os
OUT = os.environ.get('ANJU_REALTEXT_OUT', '/work/research/taidi')
STRONG = ['物业', '业主', '小区', '物管', '业委会', '开发商', '电梯', '车位', '车库', '维修基金', '维修资金', '公维金',
          '交房', '房产证', '不动产证', '楼道', '单元楼', '装修', '楼上', '邻居', '住户', '商品房', '安置房', '公租房',
          '廉租房', '保障房', '门禁', '楼盘', '住房']
WEAK = ['停水', '停电', '供水', '水压', '噪音', '扰民', '漏水', '渗水', '下水道', '化粪池', '燃气', '天然气', '暖气',
        '供暖', '停车', '垃圾', '绿化', '违建', '违章搭建']
CONTEXT = re.compile(r'居民|楼栋|栋楼|社区|宿舍|院子|家属区|[0-9一二三四五六七八九十]+栋|单元')
recs = [json.loads(l) for l in open(f'{OUT}/even_messages.jsonl', encoding='utf-8')]
kw_count = collections.Counter(); out = []
for r in recs:
    blob = (r.get('title') or '') + ' ' + (r.get('text') or '')
    hits = [k for k in STRONG if k in blob]
    weak = [k for k in WEAK if k in blob]
    if not hits and weak and CONTEXT.search(blob):
        hits = weak + ['<context>']
    elif hits:
        hits += weak
    if hits:
        r2 = dict(r); r2['property_keywords'] = hits
        r2['property_in_title'] = any(k in (r.get('title') or '') for k in STRONG)
        out.append(r2); kw_count.update(set(hits))
with open(f'{OUT}/property_even.jsonl', 'w', encoding='utf-8') as fh:
    for r in out: fh.write(json.dumps(r, ensure_ascii=False) + '\n')
stats = dict(total=len(out), by_attachment=collections.Counter(r['attachment'] for r in out),
             title_match=sum(r['property_in_title'] for r in out),
             title_match_by_attachment=collections.Counter(r['attachment'] for r in out if r['property_in_title']),
             label_dist_附件2=collections.Counter(r['label1'] for r in out if r['attachment']=='附件2'),
             keyword_counts=kw_count.most_common())
json.dump(stats, open(f'{OUT}/property_stats.json', 'w'), ensure_ascii=False, indent=1)
print(json.dumps(stats, ensure_ascii=False))
