import re
# sampling strata only (NOT labels): first matching bucket on the title, then on the text
BUCKETS = [
 ('lift',    r'电梯'),
 ('decoration', r'装修'),
 ('water_power', r'停水|停电|断水|断电|水压|供水|供电|用电|用水|自来水|电力'),
 ('owners_committee', r'业委会|业主委员会|业主大会|筹备组'),
 ('safety',  r'安全|隐患|消防|火灾|燃气|天然气|危房|倒塌|坍塌'),
 ('noise',   r'噪音|噪声|扰民|吵'),
 ('parking', r'车位|停车|车库'),
 ('fees',    r'物业费|收费|费用|乱收|公摊|退还|退费|押金|维修基金|维修资金|电费|水费'),
 ('repairs', r'维修|漏水|渗水|损坏|破损|堵塞|下水道|路灯|修复|修缮'),
 ('developer', r'开发商|交房|房产证|不动产证|延期|烂尾|楼盘|商品房|产权'),
 ('property_mgmt', r'物业|物管'),
]
def bucket(r):
    for field in ('title','text'):
        for name, pat in BUCKETS:
            if re.search(pat, r[field] or ''):
                return name
    return 'other'
